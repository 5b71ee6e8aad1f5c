// starlingd entry point. The broker itself (shards, c2s, routing, storage) is issue #3; until it
// lands this binary only reports that, so the README's run command stays honest.
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--version") == 0) {
            std::puts("starlingd 0.1.0");
            return 0;
        }
    }
    std::fputs("starlingd 0.1.0: the broker itself is not written yet (issue #3); this build holds "
               "the shared XMPP core (libstarling-xmpp) only. Nothing is listening.\n"
               "starlingd: run 'bash scripts/test.sh' to build and test what exists.\n",
               stderr);
    return 0;
}
