// Validates Kubernetes manifests against the API's OpenAPI schemas as bundled by
// kubernetes-models (no cluster, no network once `npm ci` has run).
//   node deploy/kubernetes/validate/validate.mjs deploy/kubernetes/*.yaml
// Exit status 0 when every document of every file is a known kind and valid; 1 otherwise,
// with one line per problem.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

// apiVersion "apps/v1" -> module folder "apps/v1"; "v1" -> "v1" (the core group).
async function modelFor(apiVersion, kind) {
    const path = `kubernetes-models/${apiVersion}/${kind}`;
    try {
        const mod = await import(path);
        return mod[kind];
    } catch (e) {
        return null;
    }
}

let failures = 0;
let checked = 0;
for (const file of process.argv.slice(2)) {
    const docs = parseAllDocuments(readFileSync(file, "utf8"));
    for (const [i, doc] of docs.entries()) {
        if (doc.errors.length) {
            console.log(`${file} #${i + 1}: YAML: ${doc.errors[0].message}`);
            failures++;
            continue;
        }
        const obj = doc.toJS();
        if (obj === null) continue;  // an empty document between separators
        const where = `${file} #${i + 1} ${obj.kind}/${obj.metadata?.name}`;
        const Model = await modelFor(obj.apiVersion, obj.kind);
        if (!Model) {
            console.log(`${where}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
            failures++;
            continue;
        }
        try {
            new Model(obj).validate();
            checked++;
            console.log(`ok ${where}`);
        } catch (e) {
            console.log(`${where}: ${e.message}`);
            failures++;
        }
    }
}
console.log(`${checked} valid, ${failures} invalid`);
process.exit(failures === 0 && checked > 0 ? 0 : 1);
