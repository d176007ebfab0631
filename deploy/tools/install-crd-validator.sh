#!/usr/bin/env bash
# Install the npm packages deploy/tools/validate-crs.mjs needs into deploy/tools/node_modules (gitignored),
# exactly as pinned by deploy/tools/package-lock.json. Needs node >= 20 and npm; about 10 s, 31 MB.
# tests/test_deploy.py validates the chart's ServiceMonitor and PrometheusRule with it (and fails without it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
npm ci --no-audit --no-fund --loglevel=error
# Smoke test: the modules load, and with no file to check the validator exits 2.
rc=0; node validate-crs.mjs || rc=$?
[ "$rc" -eq 2 ] || { echo "validate-crs.mjs does not run (exit $rc)" >&2; exit 1; }
echo "crd validator ready: $(node -p 'require("./node_modules/@kubernetes-models/prometheus-operator/package.json").version')"
