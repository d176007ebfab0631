// Validate ServiceMonitor and PrometheusRule objects against the prometheus-operator CRD schemas.
//
//   node deploy/tools/validate-crs.mjs FILE...      (after deploy/tools/install-crd-validator.sh)
//
// Uses @kubernetes-models/prometheus-operator: ajv validators generated from the operator's CRDs.
// Prints one JSON line per object ({file, kind, name, ok, error}); other kinds are ignored.
// Exit 0 when every object is valid, 1 when one is not, 2 when the files hold none of the two kinds.
import fs from "node:fs";
import * as yaml from "js-yaml";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const kinds = { ServiceMonitor, PrometheusRule };
let bad = 0;
let seen = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || !kinds[doc.kind]) continue;
    seen++;
    const name = doc.metadata?.name ?? "";
    try {
      new kinds[doc.kind](doc).validate();
      console.log(JSON.stringify({ file, kind: doc.kind, name, ok: true }));
    } catch (e) {
      bad++;
      console.log(JSON.stringify({ file, kind: doc.kind, name, ok: false, error: e.message }));
    }
  }
}
process.exit(bad ? 1 : seen ? 0 : 2);
