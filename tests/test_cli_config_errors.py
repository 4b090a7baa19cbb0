"""Every configuration or argument mistake an operator can make ends in one
line on stderr naming the setting (or argument), exit status 2, and no
traceback, in every command (issue 13). Each row runs the real command in a
subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_SECRET = "test-patient-hash-secret-0123456789abcdef"
# A driver that is not installed, as after the quick-start install.
NO_PSYCOPG = "import sys; sys.modules['psycopg'] = None"


def run_cli(args: list[str], env: dict[str, str] | None = None, *, cwd: Path, prelude: str = "",
            timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))}
    full_env.update({"PYTHONPATH": str(ROOT), "CDS_DATABASE_URL": f"sqlite:///{cwd}/cds.db",
                     "CDS_PATIENT_HASH_SECRET": TEST_SECRET, **(env or {})})
    code = f"{prelude}\nfrom cds_service.cli import main\nraise SystemExit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line(result: subprocess.CompletedProcess, *expected: str, code: int = 2) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == code, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# (command args, settings, prelude, text the line must contain)
BAD_SETTINGS = {
    "database url garbage": ({"CDS_DATABASE_URL": "garbage"}, "", "CDS_DATABASE_URL: is not a database URL"),
    "database url empty": ({"CDS_DATABASE_URL": ""}, "", "CDS_DATABASE_URL: not set"),
    "mysql": ({"CDS_DATABASE_URL": "mysql://u@db.example/cds"}, "", "mysql databases are not supported"),
    "psycopg2 url": ({"CDS_DATABASE_URL": "postgresql+psycopg2://u@db.example/cds"}, "",
                     "postgresql+psycopg://"),
    "driver not installed": ({"CDS_DATABASE_URL": "postgresql+psycopg://u@db.example/cds"}, NO_PSYCOPG,
                             "pip install"),
    "sqlite folder missing": ({"CDS_DATABASE_URL": "sqlite:////nonexistent-folder/cds.db"}, "",
                              "folder /nonexistent-folder does not exist"),
    "unknown database scheme": ({"CDS_DATABASE_URL": "foo://"}, "", "foo databases are not supported"),
    "unknown postgresql driver": ({"CDS_DATABASE_URL": "postgresql+foo://u@db.example/cds"}, "",
                                  "driver 'foo' is not supported"),
    "sqlite in memory": ({"CDS_DATABASE_URL": "sqlite://"}, "", "an in-memory SQLite database is not supported"),
    "sqlite :memory:": ({"CDS_DATABASE_URL": "sqlite:///:memory:"}, "", "an in-memory SQLite database"),
    "infinite timeout": ({"CDS_FHIR_TIMEOUT_SECONDS": "inf"}, "",
                         "CDS_FHIR_TIMEOUT_SECONDS='inf': expected a finite number"),
    "nan timeout": ({"CDS_FHIR_TIMEOUT_SECONDS": "nan"}, "", "CDS_FHIR_TIMEOUT_SECONDS='nan': expected a finite number"),
    "calcium range inverted": ({"CDS_CALCIUM_LOWER_MG_DL": "10.5", "CDS_CALCIUM_UPPER_MG_DL": "8.5"}, "",
                               "CDS_CALCIUM_UPPER_MG_DL='8.5': must be above CDS_CALCIUM_LOWER_MG_DL (10.5)"),
    "log level": ({"CDS_LOG_LEVEL": "LOUD"}, "", "CDS_LOG_LEVEL='LOUD'"),
    "fhir server scheme": ({"CDS_ALLOWED_FHIR_SERVERS": "ftp://x"}, "", "CDS_ALLOWED_FHIR_SERVERS='ftp://x'"),
    "negative timeout": ({"CDS_FHIR_TIMEOUT_SECONDS": "-1"}, "", "CDS_FHIR_TIMEOUT_SECONDS='-1': must be more"),
    "port not a number": ({"CDS_PORT": "abc"}, "", "CDS_PORT='abc'"),
    "port too large": ({"CDS_PORT": "70000"}, "", "CDS_PORT='70000'"),
    "workers zero": ({"CDS_WORKERS": "0"}, "", "CDS_WORKERS='0': must be at least 1"),
    "boolean": ({"CDS_AUTH_REQUIRED": "perhaps"}, "", "CDS_AUTH_REQUIRED='perhaps'"),
    "profile": ({"CDS_PROFILE": "staging"}, "", "CDS_PROFILE='staging'"),
    "secret missing": ({"CDS_PATIENT_HASH_SECRET": ""}, "",
                       "CDS_PATIENT_HASH_SECRET: is required in the production profile"),
    "secret too short": ({"CDS_PATIENT_HASH_SECRET": "short"}, "", "CDS_PATIENT_HASH_SECRET: must be at least 32"),
    "retention below quiet period": ({"CDS_RETENTION_DAYS": "10"}, "", "CDS_RETENTION_DAYS='10'"),
    "value-set folder missing": ({"CDS_EXTRA_VALUESETS_DIR": "/nonexistent-valuesets"}, "",
                                "CDS_EXTRA_VALUESETS_DIR='/nonexistent-valuesets': /nonexistent-valuesets: not a folder"),
    "url length": ({"CDS_FHIR_MAX_URL_LENGTH": "100"}, "", "CDS_FHIR_MAX_URL_LENGTH='100': must be at least 4096"),
    "database timeout beyond int32 ms": ({"CDS_DATABASE_TIMEOUT_SECONDS": "2200000"}, "",
                                         "CDS_DATABASE_TIMEOUT_SECONDS='2200000': must be at most 3600 s"),
    "plain-http fhir server": ({"CDS_ALLOWED_FHIR_SERVERS": "http://fhir.internal.example/r4"}, "",
                               "entry 'http://fhir.internal.example/r4': plain http is never fetched"),
    "cors origin with a path": ({"CDS_CORS_ORIGINS": "https://ehr.example.org/"}, "",
                                "CDS_CORS_ORIGINS='https://ehr.example.org/': entry 'https://ehr.example.org/'"),
    "base url without scheme": ({"CDS_PUBLIC_BASE_URL": "cds.example.org"}, "",
                                "CDS_PUBLIC_BASE_URL='cds.example.org': not an absolute URL"),
}
DATABASE_ROWS = ("database url garbage", "database url empty", "mysql", "psycopg2 url", "driver not installed",
                 "sqlite folder missing", "unknown database scheme", "unknown postgresql driver", "sqlite in memory")


@pytest.mark.parametrize("row", sorted(BAD_SETTINGS))
def test_serve_refuses_each_bad_setting_in_one_line(tmp_path, row):
    env, prelude, expected = BAD_SETTINGS[row]
    result = run_cli(["serve", "--port", str(_unused_port())], env, cwd=tmp_path, prelude=prelude)
    assert_one_line(result, "cds-service serve: configuration error: ", expected)
    assert "CDS discovery" not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [["migrate"], ["report"]])
@pytest.mark.parametrize("row", DATABASE_ROWS)
def test_database_commands_refuse_each_bad_database_url(tmp_path, command, row):
    env, prelude, expected = BAD_SETTINGS[row]
    assert_one_line(run_cli(command, env, cwd=tmp_path, prelude=prelude), "configuration error", expected)


def test_evaluate_refuses_a_bad_setting(tmp_path):
    result = run_cli(["evaluate", "c-falls-fall-history-age-55"], {"CDS_FHIR_TIMEOUT_SECONDS": "-1"}, cwd=tmp_path)
    assert_one_line(result, "cds-service evaluate: configuration error: CDS_FHIR_TIMEOUT_SECONDS")


def test_several_problems_are_all_reported_one_line_each(tmp_path):
    result = run_cli(["serve"], {"CDS_LOG_LEVEL": "LOUD", "CDS_PORT": "0", "CDS_DATABASE_URL": "mysql://x/y"},
                     cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("cds-service serve: configuration error: ") for line in lines)


@pytest.mark.parametrize("name, text, expected", [
    ("missing", None, "cannot read file"),
    ("not-json.json", "{not json", "not valid JSON"),
    ("a-list.json", "[]", "must be a JSON object"),
    ("bad-shape.json", json.dumps({"https://ehr.example": {"jwk": {}}}), "unknown field"),
    ("no-keys.json", json.dumps({"https://ehr.example": {"jwks": {"keys": [{"kty": "EC"}]}}}), "kid"),
    ("empty-jwks.json", json.dumps({"https://ehr.example": {"jwks": {"keys": []}}}),
     "issuer 'https://ehr.example': 'jwks' holds no keys and there is no 'jku', so no token of this issuer could "
     'ever be verified; add its public keys to \'jwks\' or its JWKS URL to \'jku\' (see the README, "Trusted issuers")'),
])
def test_serve_refuses_a_bad_trust_file_before_any_worker_starts(tmp_path, name, text, expected):
    path = str(tmp_path / name) if text is None else _file(tmp_path, name, text)
    result = run_cli(["serve", "--port", str(_unused_port())], {"CDS_TRUSTED_ISSUERS": path}, cwd=tmp_path)
    line = assert_one_line(result, "CDS_TRUSTED_ISSUERS=", expected)
    assert "Listening at" not in result.stderr and "Traceback" not in line


def test_read_only_database_folder_is_named(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o555)
    prelude = ""
    if os.geteuid() == 0:
        # Root may write anywhere (and the interpreter under /root is not
        # runnable by another user): make the command see the folder as a
        # non-root user would, through the one call the check makes.
        prelude = (f"import os; _access = os.access; os.access = lambda p, m, **k: "
                   f"False if str(p).startswith({str(data)!r}) and m & os.W_OK else _access(p, m, **k)")
    try:
        for command in (["migrate"], ["serve", "--port", str(_unused_port())], ["report"]):
            result = run_cli(command, {"CDS_DATABASE_URL": f"sqlite:///{data}/cds.db"}, cwd=tmp_path,
                             prelude=prelude)
            assert_one_line(result, f"folder {data} is not writable")
    finally:
        data.chmod(0o755)


@pytest.mark.parametrize("args, expected", [
    (["serve", "--port", "70000"], "argument --port: must be between 1 and 65535, got 70000"),
    (["serve", "--port", "0"], "argument --port: must be between 1 and 65535, got 0"),
    (["serve", "--port", "http"], "argument --port: not a port number"),
    (["serve", "--host", "999.1.1.1"], "--host/CDS_HOST '999.1.1.1' is not an address to listen on"),
    (["report", "--since", "last tuesday"], "--since must be an ISO 8601 date"),
    (["evaluate", "no-such-fixture"], "no-such-fixture: no such file, and no fixture of that name"),
    (["evaluate", "x", "--today", "someday"], "not a date"),
    (["evaluate", "x", "--hook", "order-dispatch"], "argument --hook"),
    (["fixtures", "render-requests", "--out", "/proc/nope"], "cannot write to /proc/nope"),
    (["test-client", "token", "http://127.0.0.1:8080/cds-services/x", "--dir", "/nonexistent"],
     "run `cds-service test-client keys --dir /nonexistent` first"),
    (["test-client", "token", "cds-services/x", "--dir", "."], "URL must be the full endpoint URL"),
    (["no-such-command"], "invalid choice"),
])
def test_bad_arguments_are_one_line(tmp_path, args, expected):
    assert_one_line(run_cli(args, cwd=tmp_path), expected)


def test_port_in_use_is_one_line_exit_1(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(["serve", "--port", str(port)], cwd=tmp_path)
    assert_one_line(result, f"cannot listen on 127.0.0.1:{port}: Address already in use", code=1)


def test_evaluate_names_the_file_that_is_not_json(tmp_path):
    path = _file(tmp_path, "broken.json", "{\"resourceType\": ")
    assert_one_line(run_cli(["evaluate", path], cwd=tmp_path), f"{path}: not valid JSON")


def test_unreachable_database_is_one_line_exit_1(tmp_path):
    url = f"postgresql+psycopg://nobody@127.0.0.1:{_unused_port()}/none?connect_timeout=3"
    for command in (["migrate"], ["report"], ["serve", "--port", str(_unused_port())]):
        result = run_cli(command, {"CDS_DATABASE_URL": url}, cwd=tmp_path)
        assert_one_line(result, "cannot reach the database (CDS_DATABASE_URL)", code=1)
        assert "CDS discovery" not in result.stderr


def test_failed_report_leaves_no_database_file_behind(tmp_path):
    result = run_cli(["report"], {"CDS_DATABASE_URL": f"sqlite:///{tmp_path}/missing.db"}, cwd=tmp_path)
    assert_one_line(result, "no database file", "cds-service migrate", code=1)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("command", ["rules", "settings", "discovery"])
def test_closed_pipe_is_not_an_error(tmp_path, command):
    for _ in range(5):
        cli = f"{sys.executable} -c 'from cds_service.cli import main; raise SystemExit(main())' {command}"
        result = subprocess.run(["bash", "-o", "pipefail", "-c", f"{cli} | head -1"], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and result.stderr == "", result.stderr
        assert len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize("command, expected", [
    ("migrate", "Applies the Alembic migrations"),
    ("discovery", "three CDS Hooks services"),
    ("settings", "environment variables"),
    ("rules", "One row per card"),
    ("serve", "checked before the server starts"),
    ("report", "CDS_DATABASE_URL"),
])
def test_every_command_has_a_full_help(tmp_path, command, expected):
    result = run_cli([command, "--help"], cwd=tmp_path)
    assert result.returncode == 0
    assert expected in " ".join(result.stdout.split())


# The development server itself is not started: its run is replaced by a no-op.
NO_DEV_SERVER = "import cds_service.server as s; s.run_development = lambda *a: None"


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("::", True), ("127.0.0.1", False),
                                          ("localhost", False)])
def test_dev_server_warns_when_auth_is_off_beyond_loopback(tmp_path, host, warned):
    result = run_cli(["serve", "--dev", "--port", str(_unused_port())], {"CDS_HOST": host},
                     cwd=tmp_path, prelude=NO_DEV_SERVER)
    assert result.returncode == 0, result.stderr
    assert "CDS discovery" in result.stderr
    assert ("client authentication off" in result.stderr) is warned, result.stderr
    if warned:
        # Control: with JWTs required the development profile says nothing of it.
        quiet = run_cli(["serve", "--dev", "--port", str(_unused_port())],
                        {"CDS_HOST": host, "CDS_AUTH_REQUIRED": "true"}, cwd=tmp_path, prelude=NO_DEV_SERVER)
        assert quiet.returncode == 0 and "client authentication off" not in quiet.stderr, quiet.stderr
