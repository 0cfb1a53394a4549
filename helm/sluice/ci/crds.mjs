// Validates rendered custom resources against the CRD models published on
// npm (@kubernetes-models/keda, @kubernetes-models/prometheus-operator).
// Usage: node crds.mjs NODE_MODULES_DIR < docs.json
//   docs.json: [{"source": "file:template", "doc": {...}}, ...]
// Prints "PASS crd <kind>/<name> (<source>)" or "FAIL ..." per document and
// exits 1 if any failed. The models reject wrong types, bad enums and missing
// required fields; unknown fields they accept (the Python side checks the
// keys of the fields the chart sets).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
if (!modules) {
  console.error("usage: node crds.mjs NODE_MODULES_DIR < docs.json");
  process.exit(2);
}

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject.js",
  "keda.sh/v1alpha1/TriggerAuthentication": "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication.js",
  "monitoring.coreos.com/v1/ServiceMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
  "monitoring.coreos.com/v1/PodMonitor":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor.js",
  "monitoring.coreos.com/v1/PrometheusRule":
    "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js",
};

const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const { source, doc } of docs) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const what = `${doc.kind}/${doc.metadata?.name} (${source})`;
  const file = MODELS[key];
  if (!file) {
    console.log(`FAIL crd ${what}: no model for ${key}`);
    failed++;
    continue;
  }
  try {
    const mod = await import(pathToFileURL(join(modules, file)).href);
    const Model = mod[doc.kind];
    new Model(doc).validate();
    console.log(`PASS crd ${what}`);
  } catch (e) {
    console.log(`FAIL crd ${what}: ${String(e.message || e).split("\n").slice(0, 5).join("; ")}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
