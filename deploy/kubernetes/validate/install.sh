#!/usr/bin/env bash
# Installs the manifest validator's pinned npm packages (package-lock.json) into node_modules,
# once; afterwards validate.mjs works offline. Called by deploy/install-deps.sh.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -d node_modules/kubernetes-models && -d node_modules/yaml ]]; then
  echo "validate/install.sh: kubernetes-models and yaml present"
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
