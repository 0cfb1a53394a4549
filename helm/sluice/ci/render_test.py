"""Offline tests of the sluice Helm chart, run by validate.sh in its venv.

Lints the chart strictly, renders it for every values file in ci/, validates
the built-in kinds with kubernetes-validate (Kubernetes 1.29 and the newest
schema shipped), the custom resources with the npm CRD models (crds.mjs),
asserts on the rendered objects, checks that every ci/refuse-*.yaml is
refused with the message its first line names, runs the ConfigMap's config
through `sluice check --offline` and the alerts through `promtool`.

Prints PASS/FAIL/SKIP per check and ends with "N passed, M failed".
Usage: python render_test.py --node-modules DIR [--sluice BIN] [--keep DIR]
       python render_test.py --node-modules DIR --emit-config FILE
"""

from __future__ import annotations

import argparse
import copy
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import traceback
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parent.parent
REPO = CHART.parent.parent
RELEASE, NAMESPACE = "sluice", "sluice"
KUBE_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


class Results:
    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = 0
        self.failures: list[str] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS {name}")
        else:
            self.failed += 1
            self.failures.append(name)
            print(f"FAIL {name}" + (f": {detail}" if detail else ""))
        return ok

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"SKIP {name}: {why}")


R = Results()


def run_check(name: str, fn) -> None:
    """Runs fn(); an exception is a failure of that check, not of the run."""
    try:
        result = fn()
        if isinstance(result, tuple):
            R.check(name, *result)
        elif result is not None:
            R.check(name, bool(result))
    except Exception as e:  # noqa: BLE001 - reported, then the run goes on
        R.check(name, False, f"{type(e).__name__}: {e}".strip()[:600])
        if os.environ.get("SLUICE_CHART_DEBUG"):
            traceback.print_exc()


def load_values(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def render(chart: helm.Chart, values: dict) -> dict[str, list[dict]]:
    """Template path -> the YAML documents it renders (NOTES.txt excluded)."""
    out = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs: dict[str, list[dict]] = {}
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            continue
        parsed = [d for d in yaml.safe_load_all(text) if d]
        if parsed:
            docs[path] = parsed
    return docs


def by_kind(docs: dict[str, list[dict]], kind: str) -> list[dict]:
    return [d for ds in docs.values() for d in ds if d.get("kind") == kind]


def merged_values(chart_values: dict, override: dict) -> dict:
    """Helm's coalescing, enough for the assertions: maps merge, null deletes."""
    out = copy.deepcopy(chart_values)

    def merge(dst: dict, src: dict) -> None:
        for k, v in src.items():
            if v is None:
                dst.pop(k, None)
            elif isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = copy.deepcopy(v)

    merge(out, override)
    return out


def duration_ms(text: str) -> int:
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    parts = re.findall(r"([0-9]+)\s*([a-z]+)", str(text).lower())
    return sum(int(n) * units[u] for n, u in parts)


# --- static checks of the chart's files -------------------------------------


def check_app_version() -> tuple[bool, str]:
    cargo = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["version"]
    app = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])
    return app == cargo, f"Chart.yaml appVersion {app!r} != Cargo.toml version {cargo!r}"


def check_dashboard_copy() -> tuple[bool, str]:
    a = (REPO / "docs" / "grafana-dashboard.json").read_text()
    b = (CHART / "dashboards" / "sluice.json").read_text()
    json.loads(b)
    return a == b, "helm/sluice/dashboards/sluice.json differs from docs/grafana-dashboard.json: copy it again"


def value_paths_with_comments() -> tuple[list[str], list[str]]:
    """Walks values.yaml's lines: (documented key paths, keys lacking a comment).

    A key is documented by a comment block directly above it. The comment of a
    key whose value is a block (a map or list) covers everything inside, as do
    `config` (sluice's own file) and list items. Parent sections without a
    value of their own need no comment.
    """
    lines = (CHART / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str, bool]] = []  # (indent, key, covered)
    documented, missing = [], []
    prev_comment = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            prev_comment = False
            continue
        if stripped.startswith("#"):
            prev_comment = True
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        covered = any(c for _, _, c in stack)
        m = re.match(r"^(\s*)([A-Za-z_][\w.-]*):(.*)$", line)
        if not m or stripped.startswith("- ") or covered:
            prev_comment = False
            continue
        key, rest = m.group(2), m.group(3).split(" #")[0].strip()
        path = ".".join([k for _, k, _ in stack] + [key])
        nxt = next((l for l in lines[i + 1:] if l.strip() and not l.strip().startswith("#")), "")
        nxt_indent = len(nxt) - len(nxt.lstrip())
        is_parent = rest == "" and nxt_indent > indent and not nxt.strip().startswith("- ")
        is_block = rest == "" and not is_parent
        if prev_comment:
            documented.append(path)
            stack.append((indent, key, True))
        elif is_parent:
            stack.append((indent, key, False))
        else:
            missing.append(path)
            stack.append((indent, key, is_block))
        prev_comment = False
    return documented, missing


def check_values_comments() -> tuple[bool, str]:
    _, missing = value_paths_with_comments()
    return not missing, "values without a comment: " + ", ".join(missing)


def check_readme_table() -> tuple[bool, str]:
    readme = (CHART / "README.md").read_text()
    documented, _ = value_paths_with_comments()
    absent = [p for p in documented if f"`{p}`" not in readme]
    return not absent, "values missing from README.md's table: " + ", ".join(absent)


def check_schema_covers_values() -> tuple[bool, str]:
    """Every key of values.yaml (outside config) is declared in the schema."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = load_values(CHART / "values.yaml")
    missing = []

    def walk(v, s, path):
        if not isinstance(v, dict) or path == "config":
            return
        props = s.get("properties")
        if props is None:
            return
        for k, sub in v.items():
            p = f"{path}.{k}" if path else k
            if k not in props:
                missing.append(p)
            else:
                walk(sub, props[k], p)

    walk(values, schema, "")
    return not missing, "in values.yaml but not values.schema.json: " + ", ".join(missing)


def check_yamllint(venv_bin: Path) -> tuple[bool, str]:
    files = [CHART / "Chart.yaml", CHART / "values.yaml", CHART / "tests" / "alerts.test.yaml"]
    files += sorted(CHART.glob("ci/*.yaml"))
    conf = "{extends: default, rules: {line-length: {max: 250}, document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}"
    p = subprocess.run([str(venv_bin / "yamllint"), "-s", "-d", conf, *map(str, files)],
                       capture_output=True, text=True)
    return p.returncode == 0, (p.stdout + p.stderr).strip()[:1500]


# --- lint, render, schema validation -----------------------------------------


def lint(path: Path, values: dict, kube: str) -> tuple[bool, str]:
    report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{kube}")
    bad = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    errors = report.get("errors") or []
    return not bad and not errors, json.dumps(bad + errors)[:800]


def kube_validate(doc: dict, version: str) -> tuple[bool, str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
        return True, ""
    except kubernetes_validate.ValidationError as e:
        return False, f"{'.'.join(map(str, e.path))}: {e.message}"
    except Exception as e:  # SchemaNotFoundError and friends: an unknown version is a failure
        return False, f"{type(e).__name__}: {e}"


def container(docs) -> dict:
    [dep] = by_kind(docs, "Deployment")
    [c] = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "sluice"]
    return c


def assert_rendered(name: str, values: dict, docs) -> None:
    """Assertions every rendering must satisfy."""
    [dep] = by_kind(docs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = container(docs)
    config = values["config"]
    mode = values["autoscaling"]["mode"]

    if mode == "none":
        run_check(f"{name}: replicas set to replicaCount without autoscaling",
                  lambda: (dep["spec"].get("replicas") == values["replicaCount"], str(dep["spec"].get("replicas"))))
    else:
        run_check(f"{name}: replicas omitted under autoscaling ({mode})",
                  lambda: ("replicas" not in dep["spec"], f"replicas: {dep['spec'].get('replicas')}"))

    grace_ms = duration_ms(config.get("shutdown_grace", "25s"))
    run_check(f"{name}: terminationGracePeriodSeconds > shutdown_grace",
              lambda: (pod["terminationGracePeriodSeconds"] * 1000 > grace_ms,
                       f"{pod['terminationGracePeriodSeconds']}s vs {grace_ms}ms"))

    port = int(config["http"]["listen"].rsplit(":", 1)[1])

    def probes():
        [p] = c["ports"]
        want = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        got = {k: (c[k]["httpGet"]["path"], c[k]["httpGet"]["port"]) for k in want}
        ok = p == {"name": "http", "containerPort": port, "protocol": "TCP"} and all(
            got[k] == (path, "http") for k, path in want.items())
        return ok, f"port {p}, probes {got}"
    run_check(f"{name}: probes /healthz, /readyz, startup /healthz on port http = {port}", probes)

    def service():
        svcs = by_kind(docs, "Service")
        if not values["service"]["enabled"]:
            return not svcs, "Service rendered although disabled"
        [s] = svcs
        [sp] = s["spec"]["ports"]
        return (s["spec"]["type"] == "ClusterIP" and sp["name"] == "http" and sp["targetPort"] == "http"), str(s["spec"])
    run_check(f"{name}: ClusterIP Service port named http", service)

    def security():
        psc, sc = pod["securityContext"], c["securityContext"]
        problems = []
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != 65532 or psc.get("runAsGroup") != 65532:
            problems.append(f"pod {psc}")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append("pod seccompProfile")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append("allowPrivilegeEscalation")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append("readOnlyRootFilesystem")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            problems.append("capabilities.drop")
        tmp = [v for v in pod["volumes"] if v["name"] == "tmp"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        if not tmp or "emptyDir" not in tmp[0] or mounts.get("/tmp") != "tmp":
            problems.append("no emptyDir at /tmp")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append("service account token mounted")
        return not problems, "; ".join(problems)
    run_check(f"{name}: restricted security context, 65532, emptyDir /tmp", security)

    run_check(f"{name}: container runs `run --config /etc/sluice/sluice.yaml`",
              lambda: (c["args"] == ["run", "--config", "/etc/sluice/sluice.yaml"], str(c["args"])))

    def configmap():
        cms = [d for d in by_kind(docs, "ConfigMap") if not d["metadata"]["name"].endswith("-dashboard")]
        vol = next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]
        if values["existingConfigMap"]:
            ok = not cms and vol["name"] == values["existingConfigMap"] and vol["items"][0]["key"] == values["existingConfigMapKey"]
            return ok, f"config volume {vol}, rendered ConfigMaps {len(cms)}"
        [cm] = cms
        rendered = yaml.safe_load(cm["data"]["sluice.yaml"])
        raw = cm["data"]["sluice.yaml"]
        refs_in_values = set(re.findall(r"\$\{[^}]*\}", json.dumps(config)))
        refs_kept = all(r in raw for r in refs_in_values)
        return rendered == config and refs_kept and vol["name"] == cm["metadata"]["name"], \
            f"ConfigMap config differs from values.config or lost ${{VAR}} references {refs_in_values}"
    run_check(f"{name}: ConfigMap holds config verbatim (${{VAR}} kept) and is mounted", configmap)

    def env_sources():
        env_from = c.get("envFrom", [])
        refs = [e["secretRef"]["name"] for e in env_from if "secretRef" in e]
        want = []
        if values["existingSecret"]:
            want.append(values["existingSecret"])
        if values["secret"]["create"]:
            [sec] = by_kind(docs, "Secret")
            want.append(sec["metadata"]["name"])
            if "checksum/secret" not in dep["spec"]["template"]["metadata"]["annotations"]:
                return False, "no checksum/secret annotation"
        return refs == want, f"secretRefs {refs}, want {want}"
    run_check(f"{name}: secrets reach the container through envFrom", env_sources)

    if mode == "keda":
        run_check(f"{name}: KEDA ScaledObject", lambda: assert_scaledobject(values, docs))
    if mode == "hpa":
        run_check(f"{name}: autoscaling/v2 HPA on an External lag metric", lambda: assert_hpa(values, docs))
    if mode != "keda":
        run_check(f"{name}: no ScaledObject", lambda: not by_kind(docs, "ScaledObject"))
    if mode != "hpa":
        run_check(f"{name}: no chart HPA", lambda: not by_kind(docs, "HorizontalPodAutoscaler"))

    def pdb():
        pdbs = by_kind(docs, "PodDisruptionBudget")
        if not values["podDisruptionBudget"]["enabled"]:
            return not pdbs, "PDB rendered although disabled"
        [p] = pdbs
        spec = p["spec"]
        exp = values["podDisruptionBudget"]
        if exp.get("minAvailable") is not None:
            return spec.get("minAvailable") == exp["minAvailable"] and "maxUnavailable" not in spec, str(spec)
        return spec.get("maxUnavailable") == exp["maxUnavailable"] and "minAvailable" not in spec, str(spec)
    run_check(f"{name}: PodDisruptionBudget", pdb)

    flags = {"ServiceMonitor": values["serviceMonitor"]["enabled"], "PrometheusRule": values["prometheusRule"]["enabled"]}
    for kind, enabled in flags.items():
        run_check(f"{name}: {kind} {'rendered' if enabled else 'absent'} (values flag only)",
                  lambda kind=kind, enabled=enabled: len(by_kind(docs, kind)) == (1 if enabled else 0))
    if values["grafanaDashboard"]["enabled"]:
        def dashboard():
            [cm] = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
            json.loads(cm["data"]["sluice.json"])
            return all(cm["metadata"]["labels"].get(k) == v for k, v in values["grafanaDashboard"]["labels"].items())
        run_check(f"{name}: Grafana dashboard ConfigMap labelled for the sidecar", dashboard)


def assert_scaledobject(values: dict, docs) -> tuple[bool, str]:
    [so] = by_kind(docs, "ScaledObject")
    a = values["autoscaling"]
    spec = so["spec"]
    problems = []
    want_max = a["maxReplicas"] if a["maxReplicas"] is not None else values["partitions"]
    if spec["minReplicaCount"] != a["minReplicas"] or spec["minReplicaCount"] < 1:
        problems.append(f"minReplicaCount {spec['minReplicaCount']}")
    if spec["maxReplicaCount"] != want_max or spec["maxReplicaCount"] > values["partitions"]:
        problems.append(f"maxReplicaCount {spec['maxReplicaCount']} (want {want_max})")
    if spec["scaleTargetRef"]["name"] != by_kind(docs, "Deployment")[0]["metadata"]["name"]:
        problems.append("scaleTargetRef")
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    if behavior["scaleDown"]["stabilizationWindowSeconds"] < 300:
        problems.append("scale-down is not slow")
    if "fallback" not in spec or spec["fallback"]["replicas"] < 1:
        problems.append("no fallback")
    [t] = spec["triggers"]
    if t["metricType"] != "AverageValue":
        problems.append("metricType")
    if a["keda"]["trigger"] == "prometheus":
        q = t["metadata"]["query"]
        want = f'sum(max by (topic, partition) (sluice_partition_lag_records{{namespace="{NAMESPACE}",'
        if t["type"] != "prometheus" or not q.startswith(want):
            problems.append(f"query {q}")
        if t["metadata"]["threshold"] != str(a["lagPerReplica"]):
            problems.append("threshold")
    else:
        m = t["metadata"]
        if t["type"] != "kafka" or m["consumerGroup"] != values["config"]["kafka"]["group_id"]:
            problems.append(f"kafka trigger {m}")
    return not problems, "; ".join(problems)


def assert_hpa(values: dict, docs) -> tuple[bool, str]:
    [hpa] = by_kind(docs, "HorizontalPodAutoscaler")
    a = values["autoscaling"]
    spec = hpa["spec"]
    [m] = spec["metrics"]
    ok = (hpa["apiVersion"] == "autoscaling/v2" and m["type"] == "External"
          and m["external"]["metric"]["name"] == a["hpa"]["metricName"]
          and m["external"]["target"] == {"type": "AverageValue", "averageValue": str(a["lagPerReplica"])}
          and spec["minReplicas"] == a["minReplicas"] and spec["maxReplicas"] <= values["partitions"]
          and spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300)
    return ok, json.dumps(spec)[:600]


# --- sluice check --offline ---------------------------------------------------


def sluice_check(binary: Path | None, config_text: str, name: str, expect_ok: bool = True) -> None:
    title = f"{name}: `sluice check --offline` {'accepts' if expect_ok else 'refuses'} the ConfigMap's config"
    if binary is None:
        R.skip(title, "no sluice binary (build it with `cargo build`, or set SLUICE_BIN)")
        return

    def run():
        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "sluice.yaml"
            f.write_text(config_text)
            env = dict(os.environ)
            for var in set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", config_text)):
                env.setdefault(var, f"ci-{var.lower()}")
            p = subprocess.run([str(binary), "check", "--offline", "--config", str(f)],
                               capture_output=True, text=True, env=env, timeout=60)
            out = (p.stdout + p.stderr).strip()
            if expect_ok:
                return p.returncode == 0, f"exit {p.returncode}: {out[:800]}"
            return p.returncode == 64, f"exit {p.returncode} (want 64): {out[:800]}"
    run_check(title, run)


# --- main ---------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--node-modules", required=True)
    ap.add_argument("--sluice", default="")
    ap.add_argument("--keep", default="", help="write the rendered manifests and configs here")
    ap.add_argument("--emit-config", default="",
                    help="only write the config the ConfigMap renders with the default values to this file")
    args = ap.parse_args()
    if args.emit_config:
        [cm] = by_kind(render(helm.Chart.load(str(CHART)), {}), "ConfigMap")
        Path(args.emit_config).write_text(cm["data"]["sluice.yaml"])
        return 0
    venv_bin = Path(sys.executable).parent
    binary = Path(args.sluice) if args.sluice and Path(args.sluice).is_file() else None
    keep = Path(args.keep) if args.keep else None
    if keep:
        keep.mkdir(parents=True, exist_ok=True)

    print(f"chart {CHART}; helm SDK {helm.helm_sdk_version()}; kubernetes schemas {', '.join(KUBE_VERSIONS)}")
    run_check("Chart.yaml appVersion equals Cargo.toml's version", check_app_version)
    run_check("Grafana dashboard in the chart equals docs/grafana-dashboard.json", check_dashboard_copy)
    run_check("every value in values.yaml has a comment", check_values_comments)
    run_check("README.md's values table lists every value", check_readme_table)
    run_check("values.schema.json declares every key of values.yaml", check_schema_covers_values)
    run_check("yamllint (Chart.yaml, values.yaml, ci/, tests/)", lambda: check_yamllint(venv_bin))

    chart = helm.Chart.load(str(CHART))
    defaults = load_values(CHART / "values.yaml")
    crd_docs = []

    good = sorted(p for p in CHART.glob("ci/*.yaml") if not p.name.startswith("refuse-"))
    for path in good:
        name = path.name
        override = load_values(path)
        for kube in KUBE_VERSIONS:
            run_check(f"{name}: helm lint --strict (Kubernetes {kube})", lambda: lint(path, override, kube))
        try:
            docs = render(chart, override)
        except Exception as e:  # noqa: BLE001
            R.check(f"{name}: renders", False, str(e)[:800])
            continue
        R.check(f"{name}: renders ({sum(len(d) for d in docs.values())} objects)", True)
        if keep:
            (keep / name).write_text("---\n".join(yaml.safe_dump(d, sort_keys=False) for ds in docs.values() for d in ds))
        values = merged_values(defaults, override)
        for tpl, ds in docs.items():
            for d in ds:
                what = f"{d['kind']}/{d['metadata']['name']}"
                if d["apiVersion"].startswith(CRD_GROUPS):
                    crd_docs.append({"source": name, "doc": d})
                    continue
                for kube in KUBE_VERSIONS:
                    run_check(f"{name}: {what} valid for Kubernetes {kube} (strict)",
                              lambda d=d, kube=kube: kube_validate(d, kube))
        assert_rendered(name, values, docs)
        if not values["existingConfigMap"]:
            [cm] = [d for d in by_kind(docs, "ConfigMap") if not d["metadata"]["name"].endswith("-dashboard")]
            sluice_check(binary, cm["data"]["sluice.yaml"], name)
            if keep:
                (keep / f"{path.stem}.sluice.yaml").write_text(cm["data"]["sluice.yaml"])

    # A config the chart renders happily but sluice refuses: the check matters.
    typo = {"config": {"batch": {"max_rowz": 10}}}
    docs = render(chart, typo)
    [cm] = [d for d in by_kind(docs, "ConfigMap")]
    sluice_check(binary, cm["data"]["sluice.yaml"], "config with a misspelt key", expect_ok=False)

    # Rollouts: the checksums follow the config and the secret, and only them.
    def checksums():
        def ann(v):
            [dep] = by_kind(render(chart, v), "Deployment")
            return dep["spec"]["template"]["metadata"]["annotations"]
        base = {"secret": {"create": True, "data": {"PG_PASSWORD": "a"}}}
        a, again = ann(base), ann(base)
        changed_cfg = ann({**base, "config": {"batch": {"max_rows": 100}}})
        changed_secret = ann({"secret": {"create": True, "data": {"PG_PASSWORD": "b"}}})
        problems = []
        if a != again:
            problems.append("not stable between renders")
        if changed_cfg["checksum/config"] == a["checksum/config"]:
            problems.append("checksum/config unchanged by a config change")
        if changed_cfg["checksum/secret"] != a["checksum/secret"]:
            problems.append("checksum/secret changed by a config change")
        if changed_secret["checksum/secret"] == a["checksum/secret"]:
            problems.append("checksum/secret unchanged by a secret change")
        if changed_secret["checksum/config"] != a["checksum/config"]:
            problems.append("checksum/config changed by a secret change")
        return not problems, "; ".join(problems)
    run_check("checksum/config and checksum/secret change with (only) their source", checksums)

    def topology():
        docs = render(chart, {"topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}]})
        [dep] = by_kind(docs, "Deployment")
        [t] = dep["spec"]["template"]["spec"]["topologySpreadConstraints"]
        return t["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"], str(t)
    run_check("a topology spread constraint gets the pod selector", topology)

    def keda_max_defaults_to_partitions():
        docs = render(chart, {"partitions": 7, "autoscaling": {"mode": "keda"}})
        [so] = by_kind(docs, "ScaledObject")
        return so["spec"]["maxReplicaCount"] == 7 and so["spec"]["minReplicaCount"] == 1, str(so["spec"])
    run_check("KEDA maxReplicaCount defaults to partitions, minReplicaCount 1", keda_max_defaults_to_partitions)

    # Refused values files: the first line "# refuse: REGEX" is what the
    # error must say (it names the offending value).
    for path in sorted(CHART.glob("ci/refuse-*.yaml")):
        first = path.read_text().splitlines()[0]
        m = re.match(r"#\s*refuse:\s*(.+)$", first)
        if not m:
            R.check(f"{path.name}: first line is '# refuse: REGEX'", False, first)
            continue
        pattern = m.group(1).strip()

        def refused(path=path, pattern=pattern):
            try:
                render(chart, load_values(path))
            except helm.HelmError as e:
                msg = str(e)
                return bool(re.search(pattern, msg)), f"refused, but the message does not match /{pattern}/: {msg[:600]}"
            return False, "rendered without error"
        run_check(f"{path.name}: refused with a message naming the value (/{pattern}/)", refused)

    # The validators themselves: each must refuse a broken object (so a pass
    # above means something), and an unknown Kubernetes version is an error.
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"replicas": "two", "selector": {}, "template": {}}}
    for kube in KUBE_VERSIONS:
        run_check(f"negative control: kubernetes-validate {kube} refuses a broken Deployment",
                  lambda kube=kube: (not kube_validate(broken, kube)[0], "accepted"))
    run_check("negative control: an unshipped Kubernetes version is an error, not a pass",
              lambda: (not kube_validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "1.99.0")[0],
                       "accepted"))
    crd_docs.append({"source": "negative-control", "doc": {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "broken"},
        "spec": {"scaleTargetRef": {"name": "x"}, "minReplicaCount": "one", "triggers": [{"type": "prometheus"}]}}})

    # Custom resources against the npm CRD models.
    if crd_docs:
        p = subprocess.run(["node", str(CHART / "ci" / "crds.mjs"), args.node_modules],
                           input=json.dumps(crd_docs), capture_output=True, text=True)
        lines = [l for l in p.stdout.splitlines() if l.startswith(("PASS", "FAIL"))]
        for line in lines:
            status, _, rest = line.partition(" ")
            title, _, detail = rest.partition(": ")
            if "(negative-control)" in title:
                R.check(f"negative control: CRD models refuse {title}", status == "FAIL", "accepted")
            else:
                R.check(title, status == "PASS", detail)
        if len(lines) != len(crd_docs):
            R.check("crds.mjs ran", False, (p.stdout + p.stderr)[-1500:])
        kinds = {d["doc"]["kind"] for d in crd_docs}
        R.check("CRD kinds rendered and validated: ScaledObject, ServiceMonitor, PrometheusRule",
                {"ScaledObject", "ServiceMonitor", "PrometheusRule"} <= kinds, str(kinds))

    # Alerts: promtool check rules + promtool test rules on the rendered rules.
    promtool = shutil.which("promtool")
    if not promtool:
        R.check("promtool available (Debian package prometheus)", False, "promtool not on PATH")
    else:
        with tempfile.TemporaryDirectory() as d:
            docs = render(chart, load_values(CHART / "ci" / "monitoring-values.yaml"))
            [rule] = by_kind(docs, "PrometheusRule")
            rules = Path(d) / "rules.yaml"
            rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
            shutil.copy(CHART / "tests" / "alerts.test.yaml", Path(d) / "alerts.test.yaml")
            p = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
            R.check("promtool check rules (rendered PrometheusRule)", p.returncode == 0, (p.stdout + p.stderr)[-1500:])
            names = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
            tested = set(re.findall(r"alertname:\s*(\w+)", (CHART / "tests" / "alerts.test.yaml").read_text()))
            R.check("every alert has a promtool unit test", names <= tested, f"untested: {sorted(names - tested)}")
            p = subprocess.run([promtool, "test", "rules", "alerts.test.yaml"], cwd=d, capture_output=True, text=True)
            R.check("promtool test rules helm/sluice/tests/alerts.test.yaml", p.returncode == 0,
                    (p.stdout + p.stderr)[-3000:])
            docs = render(chart, load_values(CHART / "ci" / "full-values.yaml"))
            [rule] = by_kind(docs, "PrometheusRule")
            rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
            p = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
            R.check("promtool check rules (full-values.yaml, with extraRules)", p.returncode == 0,
                    (p.stdout + p.stderr)[-1500:])

    print()
    if R.failures:
        print("failed checks:")
        for f in R.failures:
            print(f"  - {f}")
    summary = f"{R.passed} passed, {R.failed} failed"
    if R.skipped:
        summary += f", {R.skipped} skipped"
    print(summary)
    return 1 if R.failed else 0


if __name__ == "__main__":
    sys.exit(main())
