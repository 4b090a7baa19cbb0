"""The Helm chart: the CI check (.ci/check_helm.py) and properties of what it renders."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
from pathlib import Path

import helm_python as helm  # test extra: a missing one fails loudly rather than skipping
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_helm", ROOT / ".ci" / "check_helm.py")
check_helm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_helm)

POSTGRES = "postgresql+psycopg://cds:secret@postgres.db.svc:5432/cds"


def render(values=None):
    """kind -> {name: object}."""
    out: dict[str, dict] = {}
    for obj in check_helm.objects(check_helm.render(values)):
        out.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
    return out


def only(kinds, kind):
    (obj,) = kinds[kind].values()
    return obj


def container(kinds, name="cds-service"):
    spec = only(kinds, "Deployment")["spec"]["template"]["spec"]
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)


def env(c):
    return {e["name"]: e for e in c.get("env", [])}


def test_ci_check_passes(capsys, tmp_path):
    assert check_helm.main(["--keep", str(tmp_path)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    # The one CRD is reported as skipped, not silently passed.
    assert "SKIPPED schema validation of ServiceMonitor" in out
    assert (tmp_path / "default" / "osteoporosis-cds" / "templates" / "deployment.yaml").is_file()
    assert (tmp_path / "production" / "osteoporosis-cds" / "templates" / "ingress.yaml").is_file()


def test_ci_check_catches_schema_and_reference_errors(tmp_path):
    # A misspelt field is caught by the strict schema ...
    objs = check_helm.objects(check_helm.render({"securityContext": {"readOnlyRootFS": True}}))
    problems, _ = check_helm.validate(objs)
    assert any("readOnlyRootFS" in p for p in problems)
    # ... a kind without a schema that is not a known CRD fails ...
    problems, notes = check_helm.validate([{"apiVersion": "app/v1", "kind": "Deployment",
                                            "metadata": {"name": "x"}}])
    assert problems and not notes
    # ... and a dangling reference by the cross-check.
    objs = check_helm.objects(check_helm.render({"database": {"url": POSTGRES}}))
    objs = [o for o in objs if o["kind"] != "Secret"]
    with helm.Chart.load(check_helm.CHART) as chart:
        merged = chart.merge_values({"database": {"url": POSTGRES}})
    assert any("missing Secret" in p for p in check_helm.cross_check(objs, merged))


def test_default_probes_and_security():
    kinds = render()
    main = container(kinds)
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"http": 8080}
    pod = only(kinds, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    for c in pod["initContainers"] + pod["containers"]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    # Graceful shutdown fits in the grace period.
    settings = kinds["ConfigMap"]["cds-osteoporosis-cds"]["data"]
    assert pod["terminationGracePeriodSeconds"] > 5 + int(settings["CDS_GRACEFUL_TIMEOUT_SECONDS"])


def test_default_is_single_pod_sqlite_evaluation_with_migrations():
    kinds = render()
    deployment = only(kinds, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert "HorizontalPodAutoscaler" not in kinds
    assert set(kinds["Secret"]) == {"cds-osteoporosis-cds-patient-hash"}  # no database Secret
    assert "Ingress" not in kinds and "ServiceMonitor" not in kinds
    migrate = container(kinds, "migrate")
    assert migrate["command"] == ["cds-service", "migrate"]
    for c in (migrate, container(kinds)):
        assert env(c)["CDS_DATABASE_URL"]["value"] == "sqlite:////var/lib/osteoporosis-cds/cds_service.db"
        assert {"configMapRef": {"name": "cds-osteoporosis-cds"}} in c["envFrom"]
    assert only(kinds, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_database_url_secret_made_by_chart():
    kinds = render({"database": {"url": POSTGRES}})
    secret = kinds["Secret"]["cds-osteoporosis-cds-database"]
    assert base64.b64decode(secret["data"]["database-url"]).decode() == POSTGRES
    ref = env(container(kinds))["CDS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "database-url"}
    annotations = only(kinds, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/database" in annotations
    # No URL anywhere in clear text.
    assert POSTGRES not in json.dumps(only(kinds, "Deployment"))


def test_existing_secret_switch():
    kinds = render({"database": {"existingSecret": "pg-url", "secretKey": "url", "url": POSTGRES}})
    assert set(kinds["Secret"]) == {"cds-osteoporosis-cds-patient-hash"}  # existingSecret wins over url
    for name in ("cds-service", "migrate"):
        ref = env(container(kinds, name))["CDS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pg-url", "key": "url"}
    volumes = {v["name"] for v in only(kinds, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert "data" not in volumes  # no in-pod SQLite then


def test_config_change_rolls_pods():
    def annotations(values):
        return only(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]

    base = annotations(None)
    changed = annotations({"settings": {"CDS_LOG_LEVEL": "DEBUG"}})
    assert base["checksum/config"] != changed["checksum/config"]
    issuers = annotations({"trustedIssuers": {"issuers": {"https://ehr.example": {"jku": ["https://ehr.example/jwks"]}}}})
    assert base["checksum/trusted-issuers"] != issuers["checksum/trusted-issuers"]


def test_trusted_issuers_file():
    issuers = {"https://ehr.example": {"jku": ["https://ehr.example/jwks"]}}
    kinds = render({"trustedIssuers": {"issuers": issuers}})
    config_map = kinds["ConfigMap"]["cds-osteoporosis-cds-trusted-issuers"]
    assert json.loads(config_map["data"]["trusted_issuers.json"]) == issuers
    assert env(container(kinds))["CDS_TRUSTED_ISSUERS"]["value"] == "/etc/osteoporosis-cds/trusted_issuers.json"

    kinds = render({"trustedIssuers": {"existingSecret": "issuers"}})
    assert "cds-osteoporosis-cds-trusted-issuers" not in kinds["ConfigMap"]
    volume = next(v for v in only(kinds, "Deployment")["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == "trusted-issuers")
    assert volume["secret"]["secretName"] == "issuers"


def test_hpa_bounds_from_values():
    kinds = render({"database": {"existingSecret": "pg-url"},
                    "autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 9,
                                    "targetCPUUtilizationPercentage": 60}})
    hpa = only(kinds, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 9)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 60
    # The HPA owns the replica count.
    assert "replicas" not in only(kinds, "Deployment")["spec"]


@pytest.mark.parametrize("values, message", [
    ({"replicaCount": 3}, "SQLite"),
    ({"autoscaling": {"enabled": True}}, "SQLite"),
    ({"settings": {"CDS_DATABASE_URL": POSTGRES}}, "managed by the chart"),
    # Set by the chart from migrations.enabled / report.existingSecret: a
    # value in the ConfigMap would be silently overridden (or leak a secret).
    ({"settings": {"CDS_AUTO_MIGRATE": "true"}}, "managed by the chart"),
    ({"settings": {"CDS_REPORT_TOKEN": "s3cret"}}, "managed by the chart"),
    ({"settings": {"CDS_PATIENT_HASH_SECRET": "x" * 40}}, "managed by the chart"),
    ({"purge": {"enabled": True}}, "purge.enabled needs the external database"),
    # values.schema.json refuses it before the template's own check would.
    ({"settings": {"LOG_LEVEL": "x"}}, "'LOG_LEVEL' not allowed"),
])
def test_refused_values(values, message):
    with pytest.raises(helm.HelmError, match=message):
        check_helm.render(values)


def test_production_values():
    kinds = render(check_helm.load_values(check_helm.CASES["production"]))
    hpa = only(kinds, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] == 3
    ingress = only(kinds, "Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["cds.example.org"]
    assert [p["path"] for p in ingress["spec"]["rules"][0]["http"]["paths"]] == ["/cds-services", "/guidance"]
    assert only(kinds, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "Secret" not in kinds
    ref = env(container(kinds))["CDS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "osteoporosis-cds-database"



def test_service_container_does_not_migrate_when_the_init_container_does():
    variables = env(container(render()))
    assert variables["CDS_AUTO_MIGRATE"]["value"] == "false"
    assert "CDS_REPORT_TOKEN" not in variables


def test_report_token_comes_from_its_secret_in_production_values():
    kinds = render(check_helm.load_values(check_helm.CASES["production"]))
    ref = env(container(kinds))["CDS_REPORT_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "osteoporosis-cds-report", "key": "report-token"}


def test_patient_hash_secret_made_by_chart_or_named():
    """Production refuses to start without CDS_PATIENT_HASH_SECRET: the chart
    always passes one from a Secret, never in clear text."""
    kinds = render()
    secret = kinds["Secret"]["cds-osteoporosis-cds-patient-hash"]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    value = base64.b64decode(secret["data"]["patient-hash-secret"]).decode()
    assert len(value) >= 32
    for name in ("cds-service", "migrate"):
        ref = env(container(kinds, name))["CDS_PATIENT_HASH_SECRET"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "cds-osteoporosis-cds-patient-hash", "key": "patient-hash-secret"}
    assert value not in json.dumps(only(kinds, "Deployment"))

    kinds = render(check_helm.load_values(check_helm.CASES["production"]))
    assert "cds-osteoporosis-cds-patient-hash" not in kinds.get("Secret", {})
    ref = env(container(kinds))["CDS_PATIENT_HASH_SECRET"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "osteoporosis-cds-patient-hash", "key": "patient-hash-secret"}


def test_purge_cronjob_in_production_values():
    kinds = render(check_helm.load_values(check_helm.CASES["production"]))
    job = only(kinds, "CronJob")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]
    (c,) = pod["spec"]["containers"]
    assert c["command"] == ["cds-service", "purge"]
    assert env(c)["CDS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "osteoporosis-cds-database"
    assert "app.kubernetes.io/name" not in pod["metadata"]["labels"]  # never behind the Service
    assert "CronJob" not in render()  # off by default


# Operator review 16 (item 1): values the chart used to accept although they
# break the service or silently do nothing.

def configmap(values=None):
    return render(values)["ConfigMap"]["cds-osteoporosis-cds"]["data"]


@pytest.mark.parametrize("name", ["CDS_LOG_LEVL", "CDS_FOO", "CDS_WORKER"])
def test_unknown_setting_is_refused(name):
    with pytest.raises(helm.HelmError, match=f"additional properties '{name}' not allowed"):
        check_helm.render({"settings": {name: "1"}})


def test_every_setting_of_the_service_is_accepted():
    """Control: the schema does not refuse a real setting (all but the chart-managed ones at once)."""
    from cds_service.cli import CHART_MANAGED
    from cds_service.config import SETTINGS, load_settings

    defaults = load_settings(environ={})
    values = {s.env: str(getattr(defaults, s.name)) for s in SETTINGS
              if s.env not in CHART_MANAGED and not isinstance(getattr(defaults, s.name), tuple)}
    values["CDS_DATA_DIR"] = "/app"
    data = configmap({"settings": values})
    assert {k: data[k] for k in values} == values


def test_schema_drift_is_caught(tmp_path, monkeypatch):
    import shutil

    chart = tmp_path / "chart"
    shutil.copytree(check_helm.CHART, chart)
    schema = json.loads((chart / "values.schema.json").read_text())
    del schema["properties"]["settings"]["properties"]["CDS_LOG_LEVEL"]
    schema["properties"]["settings"]["properties"]["CDS_OLD_NAME"] = {"type": "string"}
    (chart / "values.schema.json").write_text(json.dumps(schema))
    monkeypatch.setattr(check_helm, "CHART", chart)
    (problem,) = check_helm.check_schema()
    assert "(+CDS_LOG_LEVEL, -CDS_OLD_NAME): run python tools/sync_readme.py" in problem
    monkeypatch.undo()
    assert check_helm.check_schema() == []


def test_unquoted_numbers_are_written_with_all_their_digits():
    values = helm.values_from_yaml("settings:\n  CDS_MAX_BODY_BYTES: 16777216\n  CDS_RETENTION_DAYS: 1000000\n"
                                   "  CDS_FHIR_TIMEOUT_SECONDS: 2.5\n  CDS_AUTH_REQUIRED: false\n")
    data = configmap(values)
    assert (data["CDS_MAX_BODY_BYTES"], data["CDS_RETENTION_DAYS"]) == ("16777216", "1000000")
    assert (data["CDS_FHIR_TIMEOUT_SECONDS"], data["CDS_AUTH_REQUIRED"]) == ("2.5", "false")
    # ... and the service takes them.
    from cds_service.config import load_settings

    settings = load_settings({k: data[k] for k in ("CDS_MAX_BODY_BYTES", "CDS_FHIR_TIMEOUT_SECONDS")}, environ={})
    assert (settings.max_body_bytes, settings.fhir_timeout_seconds) == (16777216, 2.5)
    assert check_helm.check_exact() == []


@pytest.mark.parametrize("values, message", [
    ({"terminationGracePeriodSeconds": 10}, "terminationGracePeriodSeconds (10) must exceed "
     "lifecycle.preStopSleepSeconds (5) + settings.CDS_GRACEFUL_TIMEOUT_SECONDS (20)"),
    ({"terminationGracePeriodSeconds": 25}, "raise it to at least 26"),
    ({"settings": {"CDS_GRACEFUL_TIMEOUT_SECONDS": "60"}}, "(40) must exceed"),
    ({"lifecycle": {"preStopSleepSeconds": 30}}, "lifecycle.preStopSleepSeconds (30)"),
])
def test_grace_period_shorter_than_shutdown_is_refused(values, message):
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        check_helm.render(values)


def test_grace_period_control():
    pod = lambda v: only(render(v), "Deployment")["spec"]["template"]["spec"]  # noqa: E731
    assert pod({"terminationGracePeriodSeconds": 26})["terminationGracePeriodSeconds"] == 26
    assert pod({"settings": {"CDS_GRACEFUL_TIMEOUT_SECONDS": 60},
                "terminationGracePeriodSeconds": 70})["terminationGracePeriodSeconds"] == 70
    # Without the setting the service's own default (20) counts.
    assert pod({"settings": {"CDS_GRACEFUL_TIMEOUT_SECONDS": None}, "lifecycle": {"preStopSleepSeconds": 0},
                "terminationGracePeriodSeconds": 21})["terminationGracePeriodSeconds"] == 21
    from cds_service.config import SETTINGS

    assert next(s.default for s in SETTINGS if s.env == "CDS_GRACEFUL_TIMEOUT_SECONDS") == 20


def test_refused_cases_of_the_ci_check():
    assert check_helm.check_refused() == []


def test_metrics_folder_is_the_memory_emptydir_and_the_ci_check_says_so():
    """The chart mounted a memory emptyDir at /tmp/prometheus-multiproc but never
    set PROMETHEUS_MULTIPROC_DIR, so the workers wrote their files elsewhere."""
    kinds = render()
    deployment = only(kinds, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    path = env(container(kinds))["PROMETHEUS_MULTIPROC_DIR"]["value"]
    (mount,) = [m for m in container(kinds)["volumeMounts"] if m["mountPath"] == path]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    assert check_helm.metrics_dir_problems(spec) == []
    # Without the variable, or pointed elsewhere, the cross-check fails.
    main = spec["containers"][0]
    main["env"] = [e for e in main["env"] if e["name"] != "PROMETHEUS_MULTIPROC_DIR"]
    assert check_helm.metrics_dir_problems(spec) == [
        "cds-service: PROMETHEUS_MULTIPROC_DIR is not set to the metrics emptyDir's mount path"]
    main["env"].append({"name": "PROMETHEUS_MULTIPROC_DIR", "value": "/tmp"})
    assert check_helm.metrics_dir_problems(spec) == [
        "cds-service: PROMETHEUS_MULTIPROC_DIR=/tmp is not a folder of its own (/tmp/prometheus-multiproc "
        "mounted inside it)"]
    # The migration init container and the purge job keep no metrics.
    for name in [c["name"] for c in spec.get("initContainers", [])]:
        assert "PROMETHEUS_MULTIPROC_DIR" not in env(container(kinds, name))


# --- review 21: NOTES, topology spread by release, distinct mount paths ---------------

def render_as(release, values=None):
    """Template path -> text (NOTES.txt included), for a release of that name."""
    with helm.Chart.load(check_helm.CHART) as chart:
        return chart.render(values, name=release, namespace="cds", is_install=True)


def notes(values=None):
    return next(text for path, text in render_as("cds", values).items() if path.endswith("NOTES.txt"))


def test_notes_show_discovery_with_a_token_while_jwts_are_required():
    """The service refuses discovery without a client JWT by default: NOTES
    showed a bare curl that could only get a 401."""
    text = notes()
    curls = [line.strip() for line in text.splitlines() if line.strip().startswith("curl")]
    assert 'curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/cds-services' in curls
    assert not any(c.endswith("/cds-services") and "Authorization" not in c for c in curls), curls
    assert "curl http://127.0.0.1:8080/guidance" in curls  # needs no token
    production = notes(check_helm.load_values(check_helm.CASES["production"]))
    assert 'curl -H "Authorization: Bearer $TOKEN" https://cds.example.org/cds-services' in production
    assert "(https://cds.example.org/cds-services" in production  # the audience under CDS_PUBLIC_BASE_URL


@pytest.mark.parametrize("settings", [{"CDS_AUTH_REQUIRED": False}, {"CDS_AUTH_REQUIRED": "off"},
                                      {"CDS_DISCOVERY_OPEN": "true"}])
def test_notes_show_a_plain_curl_when_discovery_needs_no_token(settings):
    """Control; and CDS_AUTH_REQUIRED: false (a YAML boolean) is off, as the
    service reads it: Sprig's `default` took false for unset and warned that
    every call would be refused."""
    text = notes({"settings": settings})
    assert "  curl http://127.0.0.1:8080/cds-services\n" in text
    assert "Bearer" not in text
    if "CDS_AUTH_REQUIRED" in settings:
        assert "no trusted issuers configured" not in text
    else:
        assert "no trusted issuers configured" in text


def _pod_spec(release, values):
    import yaml

    deployment = next(text for path, text in render_as(release, values).items()
                      if path.endswith("/deployment.yaml"))
    return yaml.safe_load(deployment)["spec"]


@pytest.mark.parametrize("release", ["cds", "bone-health"])
def test_production_topology_spread_selects_this_releases_pods(release):
    """values-production.yaml hard-coded app.kubernetes.io/instance: cds, so
    under any other release name the constraint counted no pod at all."""
    spec = _pod_spec(release, check_helm.load_values(check_helm.CASES["production"]))
    (constraint,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert constraint["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == release
    assert constraint["topologyKey"] == "topology.kubernetes.io/zone"


def test_a_labelselector_given_in_values_is_kept_and_may_use_templates():
    given = {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"team": "{{ .Release.Name }}-bone"}}}
    spec = _pod_spec("abc", {"topologySpreadConstraints": [given]})
    (constraint,) = spec["template"]["spec"]["topologySpreadConstraints"]
    assert constraint == {**given, "labelSelector": {"matchLabels": {"team": "abc-bone"}}}
    assert "topologySpreadConstraints" not in _pod_spec("abc", None)["template"]["spec"]  # none by default


@pytest.mark.parametrize("values, words", [
    ({"trustedIssuers": {"mountPath": "/tmp"}},
     "trustedIssuers.mountPath (/tmp) is also the mount path of the writable /tmp emptyDir"),
    ({"trustedIssuers": {"mountPath": "/tmp/prometheus-multiproc/"}},
     "trustedIssuers.mountPath (/tmp/prometheus-multiproc) is also the mount path of the metrics emptyDir"),
    ({"database": {"sqlitePath": "/etc/osteoporosis-cds/cds.db"}},
     "the folder of database.sqlitePath (/etc/osteoporosis-cds) is also the mount path of trustedIssuers.mountPath"),
    ({"database": {"sqlitePath": "/tmp/cds.db"}}, "the folder of database.sqlitePath (/tmp)"),
])
def test_duplicate_mount_paths_are_refused(values, words):
    """Kubernetes refuses the Deployment (volumeMounts must have distinct
    mountPaths) only when it is applied; the chart says so at render time."""
    with pytest.raises(helm.HelmError, match=re.escape(words)):
        check_helm.render(values)


def test_distinct_mount_paths_render():
    """Control: nested folders are distinct mounts, and with the external
    database the SQLite folder is not mounted at all."""
    for values in (None, {"trustedIssuers": {"mountPath": "/tmp/issuers"}},
                   {"database": {"existingSecret": "pg", "sqlitePath": "/tmp/cds.db"}}):
        main = container(render(values))
        paths = [m["mountPath"] for m in main["volumeMounts"]]
        assert len(paths) == len(set(paths)), paths
