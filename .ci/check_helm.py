#!/usr/bin/env python3
"""Check the Helm chart without a cluster.

For the chart's default values and for helm/values-production.yaml:
  1. `helm lint --strict` (Helm's own library via helm-python-sdk; warnings fail),
  2. render the templates offline (as `helm template` would),
  3. write the manifests to a temporary directory (kept with --keep),
  4. validate every object with kubernetes-validate in strict mode (unknown
     fields rejected) against each Kubernetes version in KUBE_VERSIONS,
  5. check references between the objects (selectors, ConfigMap/Secret names,
     PROMETHEUS_MULTIPROC_DIR on the metrics emptyDir).
Then, once:
  6. values.schema.json is the one tools/sync_readme.py generates from the
     service's settings (a setting added or renamed cannot drift from what
     the chart accepts in `settings`),
  7. operator mistakes in REFUSED fail to render, each with its message,
  8. numbers and booleans in `settings` reach the ConfigMap as the service
     parses them (EXACT).

kubernetes-validate ships schemas only for built-in kinds. Its CLI merely
warns, exit code 0, when it has no schema, which would let a misspelt
apiVersion pass; here a missing schema fails, except for the CRD kinds in
CRD_KINDS, which are reported as skipped and get a small structural check.

Exit 0 when everything passes, 1 otherwise. Usage:
    python .ci/check_helm.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's cds_service, installed or not
CHART = ROOT / "helm" / "osteoporosis-cds"
# The oldest Kubernetes minor still widely run, and the newest with schemas here.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
LINT_KUBE_VERSION = "v1.30.0"
RELEASE, NAMESPACE = "cds", "cds"
CASES: dict[str, Path | None] = {
    "default": None,
    "production": ROOT / "helm" / "values-production.yaml",
}
# Custom resources without a schema in kubernetes-validate.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def _refused() -> dict[str, tuple[str, str]]:
    """Operator mistakes the chart refuses at render time: values (YAML, as in
    a values file) -> words the refusal must contain."""
    from cds_service.cli import CHART_MANAGED

    cases = {
        # Misspelt or unknown settings would be ignored by the service (values.schema.json).
        "misspelt setting": ("settings: {CDS_LOG_LEVL: DEBUG}", "'CDS_LOG_LEVL' not allowed"),
        "unknown setting": ("settings: {CDS_FOO: '1'}", "'CDS_FOO' not allowed"),
        "not a CDS_ setting": ("settings: {LOG_LEVEL: DEBUG}", "'LOG_LEVEL' not allowed"),
        "a list as a setting": ("settings: {CDS_FHIR_RETRIES: [1, 2]}", "/settings/CDS_FHIR_RETRIES"),
        # SIGKILL would cut requests in flight.
        "grace period too short": ("terminationGracePeriodSeconds: 10",
                                   "terminationGracePeriodSeconds (10) must exceed"),
        "graceful timeout beyond the grace period": ("settings: {CDS_GRACEFUL_TIMEOUT_SECONDS: '60'}",
                                                     "+ settings.CDS_GRACEFUL_TIMEOUT_SECONDS (60)"),
        "grace period equal to the sum": ("terminationGracePeriodSeconds: 25", "raise it to at least 26"),
        # Kubernetes refuses a container whose volumeMounts share a mountPath.
        "trust file folder on /tmp": ("trustedIssuers: {mountPath: /tmp/}", "need distinct mountPaths"),
        "SQLite folder on the trust file folder": ("database: {sqlitePath: /etc/osteoporosis-cds/cds.db}",
                                                   "need distinct mountPaths"),
    }
    for key in CHART_MANAGED:
        cases[f"{key} in settings"] = (f"settings: {{{key}: x}}", f"settings.{key} is managed by the chart")
    return cases


# Values (YAML) -> what the ConfigMap must hold. Helm reads an unquoted number
# as a float, which Go would print as 1.6777216e+07: the service refuses that.
EXACT = (
    "settings: {CDS_MAX_BODY_BYTES: 16777216, CDS_RETENTION_DAYS: 1000000, CDS_WORKERS: 4,"
    " CDS_FHIR_TIMEOUT_SECONDS: 2.5, CDS_AUTH_REQUIRED: false, CDS_LOG_LEVEL: DEBUG}",
    {"CDS_MAX_BODY_BYTES": "16777216", "CDS_RETENTION_DAYS": "1000000", "CDS_WORKERS": "4",
     "CDS_FHIR_TIMEOUT_SECONDS": "2.5", "CDS_AUTH_REQUIRED": "false", "CDS_LOG_LEVEL": "DEBUG"},
)


def load_values(path: Path | None) -> dict[str, Any] | None:
    # Parsed by Helm's own values reader, exactly as `-f FILE` would be.
    return None if path is None else helm.values_from_yaml(path.read_text())


def lint(values: dict[str, Any] | None) -> list[str]:
    report = helm.lint(CHART, values, strict=True, kube_version=LINT_KUBE_VERSION)
    problems = [f"lint: {error}" for error in report.get("errors") or []]
    for message in report.get("messages") or []:
        if message["severity"] >= 2:  # 2 warning, 3 error
            problems.append(f"lint: {message['path']}: {message['error']}")
    return problems


def render(values: dict[str, Any] | None) -> dict[str, str]:
    """Template path -> rendered YAML, without NOTES.txt and empty templates."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return {path: text for path, text in rendered.items()
            if not path.endswith("NOTES.txt") and text.strip()}


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    docs = []
    for text in rendered.values():
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def write(rendered: dict[str, str], directory: Path) -> None:
    for path, text in rendered.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _check_crd(obj: dict[str, Any]) -> list[str]:
    # Only the fields this chart sets; not a substitute for the CRD's schema.
    problems = []
    spec = obj.get("spec") or {}
    if not (spec.get("selector") or {}).get("matchLabels"):
        problems.append("spec.selector.matchLabels missing")
    endpoints = spec.get("endpoints") or []
    if not endpoints or not all(e.get("port") and e.get("path") for e in endpoints):
        problems.append("spec.endpoints need port and path")
    return problems


def validate(objs: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Strict schema validation; returns (problems, notes)."""
    problems, notes = [], []
    for obj in objs:
        name = f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                problems.append(f"{name} (k8s {version}): {path}: {exc.message}")
            except SchemaNotFoundError as exc:
                if (obj.get("apiVersion"), obj.get("kind")) in CRD_KINDS:
                    notes.append(f"SKIPPED schema validation of {name}: custom resource "
                                 f"{obj['apiVersion']} has no schema in kubernetes-validate; "
                                 "structural check only")
                    problems.extend(f"{name}: {p}" for p in _check_crd(obj))
                    break
                problems.append(f"{name}: {exc.message}")
    return problems, notes


def cross_check(objs: list[dict[str, Any]], values: dict[str, Any]) -> list[str]:
    """References between objects that schemas cannot see."""
    problems = []
    by_kind: dict[str, dict[str, dict]] = {}
    for obj in objs:
        by_kind.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    deployments = list(by_kind.get("Deployment", {}).values())
    if len(deployments) != 1:
        return [f"expected one Deployment, got {len(deployments)}"]
    deployment = deployments[0]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    if not selects(deployment["spec"]["selector"]["matchLabels"]):
        problems.append("Deployment selector does not match its pod labels")
    for kind in ("Service", "PodDisruptionBudget"):
        for name, obj in by_kind.get(kind, {}).items():
            selector = obj["spec"]["selector"]
            selector = selector.get("matchLabels", selector) if kind != "Service" else selector
            if not selects(selector):
                problems.append(f"{kind}/{name} does not select the pods")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        if hpa["spec"]["scaleTargetRef"]["name"] != deployment["metadata"]["name"]:
            problems.append(f"HorizontalPodAutoscaler/{name} targets another Deployment")
    service_ports = {p["name"] for s in by_kind.get("Service", {}).values() for p in s["spec"]["ports"]}
    for name, monitor in by_kind.get("ServiceMonitor", {}).items():
        for endpoint in monitor["spec"]["endpoints"]:
            if endpoint["port"] not in service_ports:
                problems.append(f"ServiceMonitor/{name} scrapes unknown port {endpoint['port']}")
    services = by_kind.get("Service", {})
    for name, ingress in by_kind.get("Ingress", {}).items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if path["backend"]["service"]["name"] not in services:
                    problems.append(f"Ingress/{name} routes to a Service the chart does not make")

    # ConfigMaps/Secrets the pod needs: made by the chart, or named in values as existing.
    existing_secrets = {values.get("database", {}).get("existingSecret"),
                        values.get("trustedIssuers", {}).get("existingSecret"),
                        values.get("report", {}).get("existingSecret"),
                        values.get("patientHash", {}).get("existingSecret")} - {None, ""}
    existing_maps = {values.get("trustedIssuers", {}).get("existingConfigMap")} - {None, ""}
    config_maps = set(by_kind.get("ConfigMap", {})) | existing_maps
    secrets = set(by_kind.get("Secret", {})) | existing_secrets
    spec = pod["spec"]
    for container in spec.get("initContainers", []) + spec["containers"]:
        for source in container.get("envFrom", []):
            if source.get("configMapRef", {}).get("name") not in config_maps:
                problems.append(f"{container['name']}: envFrom names a missing ConfigMap")
        for env in container.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref and ref["name"] not in secrets:
                problems.append(f"{container['name']}: {env['name']} names a missing Secret {ref['name']}")
        mounts = {m["name"] for m in container.get("volumeMounts", [])}
        missing = mounts - {v["name"] for v in spec.get("volumes", [])}
        if missing:
            problems.append(f"{container['name']}: mounts undeclared volumes {sorted(missing)}")
    for volume in spec.get("volumes", []):
        if "configMap" in volume and volume["configMap"]["name"] not in config_maps:
            problems.append(f"volume {volume['name']} names a missing ConfigMap")
        if "secret" in volume and volume["secret"]["secretName"] not in secrets:
            problems.append(f"volume {volume['name']} names a missing Secret")
    return problems + metrics_dir_problems(spec)


def metrics_dir_problems(spec: dict[str, Any]) -> list[str]:
    """The service container's PROMETHEUS_MULTIPROC_DIR is the mount path of
    an emptyDir of its own: the workers' metric files go there (otherwise
    serve makes a folder under /tmp, and the emptyDir meant for them sits
    unused), and the server removes prometheus_client's files there at start."""
    container = spec["containers"][0]
    name = container["name"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    path = env.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return [f"{name}: PROMETHEUS_MULTIPROC_DIR is not set to the metrics emptyDir's mount path"]
    mount = next((m for m in container.get("volumeMounts", []) if m["mountPath"].rstrip("/") == path.rstrip("/")),
                 None)
    if mount is None:
        return [f"{name}: PROMETHEUS_MULTIPROC_DIR={path} is not a volume mount of its own"]
    volume = next((v for v in spec.get("volumes", []) if v["name"] == mount["name"]), {})
    if "emptyDir" not in volume:
        return [f"{name}: PROMETHEUS_MULTIPROC_DIR={path} is volume {mount['name']}, not an emptyDir"]
    inside = [m["mountPath"] for m in container["volumeMounts"] if m["mountPath"].startswith(path.rstrip("/") + "/")]
    if inside:
        return [f"{name}: PROMETHEUS_MULTIPROC_DIR={path} is not a folder of its own ({', '.join(inside)} "
                "mounted inside it)"]
    return []


def check_case(case: str, values_file: Path | None, out_dir: Path) -> list[str]:
    values = load_values(values_file)
    problems = lint(values)
    try:
        rendered = render(values)
    except helm.HelmError as exc:
        return problems + [f"render: {exc}"]
    write(rendered, out_dir / case)
    objs = objects(rendered)
    schema_problems, notes = validate(objs)
    for note in notes:
        print(f"  note: {note}")
    with helm.Chart.load(CHART) as chart:
        merged = chart.merge_values(values)
    problems += schema_problems + cross_check(objs, merged)
    print(f"  {len(objs)} objects rendered to {out_dir / case}, "
          f"validated strictly against Kubernetes {', '.join(KUBE_VERSIONS)}")
    return problems


def check_schema() -> list[str]:
    """values.schema.json is what tools/sync_readme.py makes from the settings."""
    from cds_service.cli import chart_values_schema

    path = CHART / "values.schema.json"
    try:
        on_disk = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{path}: {exc}"]
    wanted = chart_values_schema()
    if on_disk == wanted:
        return []
    names = set(on_disk.get("properties", {}).get("settings", {}).get("properties", {}))
    expected = set(wanted["properties"]["settings"]["properties"])
    drift = [f"+{n}" for n in sorted(expected - names)] + [f"-{n}" for n in sorted(names - expected)]
    return [f"{path.name} does not match the service's settings"
            f"{' (' + ', '.join(drift) + ')' if drift else ''}: run python tools/sync_readme.py"]


def check_refused() -> list[str]:
    # Helm logs each `fail` on stderr besides raising it; the refusals are expected here.
    helm.disable_logging()
    problems = []
    for case, (text, words) in _refused().items():
        try:
            render(helm.values_from_yaml(text))
        except helm.HelmError as exc:
            if words not in str(exc):
                problems.append(f"{case} ({text}): refused, but not saying {words!r}: {str(exc).strip()}")
            continue
        problems.append(f"{case} ({text}): rendered, should be refused ({words!r})")
    return problems


def check_exact() -> list[str]:
    text, wanted = EXACT
    objs = objects(render(helm.values_from_yaml(text)))
    (data,) = [o["data"] for o in objs if o["kind"] == "ConfigMap" and "CDS_PROFILE" in (o.get("data") or {})]
    return [f"settings.{key} renders as {data.get(key)!r}, not {value!r}"
            for key, value in wanted.items() if data.get(key) != value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="write the rendered manifests here and keep them")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="helm-render-") as tmp:
        out_dir = args.keep or Path(tmp)
        failed = False
        for case, values_file in CASES.items():
            print(f"{case} values{f' ({values_file.relative_to(ROOT)})' if values_file else ''}:")
            problems = check_case(case, values_file, out_dir)
            for problem in problems:
                print(f"  FAIL {problem}")
            failed |= bool(problems)
            if not problems:
                print("  ok")
    checks = (("values.schema.json matches the settings", check_schema),
              (f"operator mistakes refused ({len(_refused())})", check_refused),
              ("numbers in settings rendered exactly", check_exact))
    for title, check in checks:
        print(f"{title}:")
        problems = check()
        for problem in problems:
            print(f"  FAIL {problem}")
        failed |= bool(problems)
        if not problems:
            print("  ok")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
