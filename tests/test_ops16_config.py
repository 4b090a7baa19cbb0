"""Operator review 16: settings that were accepted silently now get one
warning line at `cds-service serve` start (a misspelt CDS_ variable, a trust
file trusting no one, loopback http in production, a FHIR budget below the
per-request timeout), and two mistakes that ended in a traceback or a wrong
pointer are one line. Each runs the real command in a subprocess; the
production server itself is not started (exec_production is stubbed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_config_errors import _file, _unused_port, assert_one_line, run_cli

NO_SERVER = ("import cds_service.server as s; s.exec_production = lambda *a: None; "
             "s.run_development = lambda *a: None")
# Settings that give no production warning of their own, so each case's warning stands alone.
QUIET = {"CDS_PUBLIC_BASE_URL": "https://cds.example.org", "CDS_AUTH_REQUIRED": "true"}
ISSUER = {"https://ehr.example.org": {"jku": ["https://ehr.example.org/.well-known/jwks.json"]}}


def warnings(tmp_path, env: dict[str, str], *args: str) -> list[str]:
    """The configuration warnings `cds-service serve` logs before the server starts."""
    if "CDS_TRUSTED_ISSUERS" not in env:
        env = {**env, "CDS_TRUSTED_ISSUERS": _file(tmp_path, "trusted.json", json.dumps(ISSUER))}
    result = run_cli(["serve", "--port", str(_unused_port()), *args], {**QUIET, **env}, cwd=tmp_path,
                     prelude=NO_SERVER)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    if "--dev" in args:
        return [line.removeprefix("WARNING: ") for line in result.stderr.splitlines()
                if line.startswith("WARNING: ")]
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    return [e["message"] for e in lines if e.get("event") == "configuration_warning"]


# What Kubernetes puts in a pod of the chart (release "cds") for its own Service.
SERVICE_LINKS = {"CDS_OSTEOPOROSIS_CDS_SERVICE_HOST": "10.0.0.7", "CDS_OSTEOPOROSIS_CDS_SERVICE_PORT": "80",
                 "CDS_OSTEOPOROSIS_CDS_SERVICE_PORT_HTTP": "80", "CDS_OSTEOPOROSIS_CDS_PORT": "tcp://10.0.0.7:80",
                 "CDS_OSTEOPOROSIS_CDS_PORT_80_TCP": "tcp://10.0.0.7:80",
                 "CDS_OSTEOPOROSIS_CDS_PORT_80_TCP_PROTO": "tcp", "CDS_OSTEOPOROSIS_CDS_PORT_80_TCP_PORT": "80",
                 "CDS_OSTEOPOROSIS_CDS_PORT_80_TCP_ADDR": "10.0.0.7"}


def test_control_no_warning_for_a_clean_configuration(tmp_path):
    # Also: the packaging variable, the test harness's own and Kubernetes'
    # service links are not "unknown".
    # CDS_DATA_DIR must be a real data folder (serve refuses one without card templates).
    repo = str(Path(__file__).resolve().parents[1])
    assert warnings(tmp_path, {"CDS_DATA_DIR": repo, "CDS_TEST_ANYTHING": "1",
                               "CDS_REQUIRE_BROWSER": "1", **SERVICE_LINKS}) == []


@pytest.mark.parametrize("args", [(), ("--dev",)])
def test_misspelt_setting_is_named_with_the_likely_one(tmp_path, args):
    found = warnings(tmp_path, {"CDS_LOG_LEVL": "DEBUG", "CDS_FOO": "1"}, *args)
    assert found == [
        "CDS_FOO: not a setting of this service, ignored; `cds-service settings` lists them",
        "CDS_LOG_LEVL: not a setting of this service, ignored; did you mean CDS_LOG_LEVEL? "
        "`cds-service settings` lists them",
    ]


def test_trust_file_trusting_no_one_is_warned(tmp_path):
    """The chart's default install mounts `{}`: every call would be 401 without a word."""
    empty = _file(tmp_path, "empty.json", "{}")
    (line,) = warnings(tmp_path, {"CDS_TRUSTED_ISSUERS": empty})
    assert line.startswith(f"CDS_TRUSTED_ISSUERS='{empty}': the trust file names no issuer: no CDS client is "
                           "trusted, so every hook call will be refused (401)")
    assert 'see the README, "Trusted issuers"' in line
    # Control: without authentication an empty file refuses nobody (that has its own warning).
    found = warnings(tmp_path, {"CDS_TRUSTED_ISSUERS": empty, "CDS_AUTH_REQUIRED": "false"})
    assert [w.split(":")[0] for w in found] == ["CDS_AUTH_REQUIRED='false'"]


def test_loopback_http_in_production_is_warned(tmp_path):
    (line,) = warnings(tmp_path, {"CDS_ALLOW_LOOPBACK_HTTP": "true"})
    assert line.startswith("CDS_ALLOW_LOOPBACK_HTTP='true': plain-http FHIR servers on loopback addresses are "
                           "allowed")


def test_fhir_budget_below_one_request_timeout_is_warned(tmp_path):
    (line,) = warnings(tmp_path, {"CDS_FHIR_TOTAL_TIMEOUT_SECONDS": "1", "CDS_FHIR_TIMEOUT_SECONDS": "5"})
    assert line.startswith("CDS_FHIR_TOTAL_TIMEOUT_SECONDS='1': 1 s is below CDS_FHIR_TIMEOUT_SECONDS (5 s)")
    # Control: equal is fine.
    assert warnings(tmp_path, {"CDS_FHIR_TOTAL_TIMEOUT_SECONDS": "5", "CDS_FHIR_TIMEOUT_SECONDS": "5"}) == []


def test_trust_file_errors_point_at_the_readme_section_that_exists(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "\n### Trusted issuers\n" in readme
    result = run_cli(["serve", "--port", str(_unused_port())],
                     {"CDS_TRUSTED_ISSUERS": _file(tmp_path, "bad.json", "{not json")}, cwd=tmp_path)
    assert_one_line(result, 'not valid JSON', '(see the README, "Trusted issuers")')


@pytest.mark.parametrize("command", [["migrate"], ["serve", "--port", "0"]])
def test_sqlite_folder_where_no_file_can_be_made_is_one_line(tmp_path, command):
    """/proc passes the permission check (as root) but no file can be created
    there: the migration lock used to end in a traceback."""
    if command[-1] == "0":
        command = ["serve", "--port", str(_unused_port())]
    result = run_cli(command, {"CDS_DATABASE_URL": "sqlite:////proc/cds.db"}, cwd=tmp_path)
    assert_one_line(result, "CDS_DATABASE_URL: ", "folder /proc")
