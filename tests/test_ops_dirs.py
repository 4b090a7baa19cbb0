"""The two folders the service is pointed at from outside its settings:
PROMETHEUS_MULTIPROC_DIR (only prometheus_client's own files are ever
removed; a folder holding the database is refused) and CDS_DATA_DIR (a wheel
works without it; one that lacks the card templates or the OpenAPI document
is refused at start, one line, exit 2)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cds_service import metrics_dir
from cds_service.config import SettingsError, load_settings, production_warnings
from tests.test_server import STAND_IN, _start, _stop, _wait_until_answers

ROOT = Path(__file__).resolve().parents[1]
SECRET = "test-patient-hash-secret-0123456789abcdef"


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))}
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path), CDS_PATIENT_HASH_SECRET=SECRET, **extra)
    return env


def _serve(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess:
    """`cds-service serve` expected to refuse at once (a hang is a failure)."""
    return subprocess.run([sys.executable, "-m", "cds_service.cli", "serve", "--port", "1"], cwd=tmp_path,
                          env=_env(tmp_path, **extra), capture_output=True, text=True, timeout=30)


# --- PROMETHEUS_MULTIPROC_DIR --------------------------------------------------

WRITE_EVERY_KIND = textwrap.dedent("""
    import os
    from prometheus_client import Counter, Gauge, Histogram, Summary
    Counter("c", "c").inc()
    Histogram("h", "h").observe(1)
    Summary("s", "s").observe(1)
    for mode in sorted(Gauge._MULTIPROC_MODES):
        Gauge("g_" + mode, "g", multiprocess_mode=mode).set(1)
    print(sorted(Gauge._MULTIPROC_MODES))
""")


def test_file_names_are_those_the_installed_prometheus_client_writes(tmp_path):
    out = subprocess.run([sys.executable, "-c", WRITE_EVERY_KIND], env={**os.environ, metrics_dir.ENV: str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout
    assert sorted(eval(out)) == sorted(metrics_dir.GAUGE_MODES)  # noqa: S307 (our own print)
    written = sorted(os.listdir(tmp_path))
    assert len(written) == 3 + len(metrics_dir.GAUGE_MODES)
    assert all(metrics_dir.is_metrics_file(name) for name in written), written
    for name in ("cds.db", "counter.db", "counter_12.db.bak", "gauge_12.db", "gauge_bogus_12.db", "notes.txt"):
        assert not metrics_dir.is_metrics_file(name)


def test_server_start_removes_only_prometheus_files(tmp_path):
    """The master's clean-up at start (run without serve's checks, as
    `python -m cds_service.server` would): stale metric files go, nothing
    else: not the database, not a folder, not a look-alike."""
    folder = tmp_path / "data"
    (folder / "backups").mkdir(parents=True)
    (folder / "backups" / "db-2026-11-30.sql").write_text("x")
    kept = {"cds.db": b"SQLite format 3\0", "operator-notes.txt": b"precious", "counter_1.db.bak": b"x"}
    for name, data in kept.items():
        (folder / name).write_bytes(data)
    stale = ("counter_12345.db", "histogram_12345.db", "gauge_livesum_12345.db", "summary_7.db")
    for name in stale:
        (folder / name).write_bytes(b"stale")
    proc, port = _start(STAND_IN, tmp_path, PROMETHEUS_MULTIPROC_DIR=str(folder))
    try:
        _wait_until_answers(proc, f"http://127.0.0.1:{port}/")
        for name in stale:
            assert not (folder / name).exists(), name
        for name, data in kept.items():
            assert (folder / name).read_bytes() == data, name
        assert (folder / "backups" / "db-2026-11-30.sql").read_text() == "x"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        _stop(proc)


def test_serve_refuses_a_metrics_folder_holding_the_sqlite_database(tmp_path):
    """The review's case: PROMETHEUS_MULTIPROC_DIR pointed at the data folder.
    Refused before the database is migrated; nothing in the folder touched."""
    folder = tmp_path / "data"
    (folder / "backups").mkdir(parents=True)
    (folder / "operator-notes.txt").write_text("precious")
    result = _serve(tmp_path, CDS_DATABASE_URL=f"sqlite:///{folder}/cds.db", PROMETHEUS_MULTIPROC_DIR=str(folder))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"cds-service serve: configuration error: PROMETHEUS_MULTIPROC_DIR='{folder}': "
                               "holds the SQLite database")
    assert sorted(os.listdir(folder)) == ["backups", "operator-notes.txt"]  # not even created


def test_metrics_folder_with_another_db_file_is_refused_and_other_files_warned_about(tmp_path):
    db_url = f"sqlite:///{tmp_path}/cds.db"
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"")
    (folder / "state.db").write_bytes(b"")
    with pytest.raises(SettingsError) as refused:
        load_settings({"CDS_DATABASE_URL": db_url, "CDS_PATIENT_HASH_SECRET": SECRET}, environ={metrics_dir.ENV: str(folder)}, probes="all")
    assert refused.value.problems == [
        f"PROMETHEUS_MULTIPROC_DIR='{folder}': holds 1 .db file(s) that are not prometheus_client's (state.db): "
        "/metrics reads every .db file in this folder; give the metrics a folder of their own, "
        "e.g. /tmp/prometheus-multiproc"]
    (folder / "state.db").unlink()
    (folder / "notes.txt").write_text("x")
    (folder / "sub").mkdir()
    settings = load_settings({"CDS_DATABASE_URL": db_url, "CDS_PATIENT_HASH_SECRET": SECRET}, environ={metrics_dir.ENV: str(folder)}, probes="all")
    os.environ[metrics_dir.ENV] = str(folder)
    try:
        warnings = [w for w in production_warnings(settings) if w.startswith(metrics_dir.ENV)]
    finally:
        del os.environ[metrics_dir.ENV]
    assert warnings == [f"PROMETHEUS_MULTIPROC_DIR='{folder}': holds 2 entries that are not metric files "
                        "(notes.txt, sub); the server removes only prometheus_client's own files "
                        "(counter_<pid>.db, gauge_*, histogram_*) and leaves these, but the metrics should "
                        "have a folder of their own"]


def test_quiet_control_a_folder_of_metric_files_or_none_is_neither_refused_nor_warned_about(tmp_path, monkeypatch):
    db_url = f"sqlite:///{tmp_path}/cds.db"
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"")
    (folder / "gauge_livesum_1.db").write_bytes(b"")
    for environ in ({}, {metrics_dir.ENV: str(folder)}, {metrics_dir.ENV: str(tmp_path / "new" / "prom")}):
        settings = load_settings({"CDS_DATABASE_URL": db_url, "CDS_PATIENT_HASH_SECRET": SECRET}, environ=environ, probes="all")
        monkeypatch.delenv(metrics_dir.ENV, raising=False)
        for key, value in environ.items():
            monkeypatch.setenv(key, value)
        assert not [w for w in production_warnings(settings) if w.startswith(metrics_dir.ENV)]


# --- CDS_DATA_DIR ---------------------------------------------------------------

def test_serve_refuses_a_data_dir_that_does_not_exist(tmp_path):
    missing = tmp_path / "nowhere"
    result = _serve(tmp_path, CDS_DATABASE_URL=f"sqlite:///{tmp_path}/cds.db", CDS_DATA_DIR=str(missing))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"cds-service serve: configuration error: CDS_DATA_DIR='{missing}': folder {missing} does not exist; "
        "point it at the folder holding cards/ and openapi/ (the image's /app)"]
    assert not (tmp_path / "cds.db").exists()  # refused before migrating


def test_data_dir_missing_the_openapi_document_is_named(tmp_path):
    shutil.copytree(ROOT / "cards", tmp_path / "data" / "cards")
    with pytest.raises(SettingsError) as refused:
        load_settings({"CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.db", "CDS_PATIENT_HASH_SECRET": SECRET},
                      environ={"CDS_DATA_DIR": str(tmp_path / "data")}, probes="all")
    assert refused.value.problems == [
        f"CDS_DATA_DIR='{tmp_path / 'data'}': {tmp_path / 'data'} has no openapi/openapi.yaml; "
        "point it at the folder holding cards/ and openapi/ (the image's /app)"]


def test_create_app_refuses_a_data_dir_without_card_templates(make_app, tmp_path, monkeypatch):
    (tmp_path / "data" / "openapi").mkdir(parents=True)
    shutil.copy(ROOT / "openapi" / "openapi.yaml", tmp_path / "data" / "openapi")
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SettingsError, match=r"has no cards/C-\*\.yaml \(the card templates\)"):
        make_app()


def test_quiet_control_a_complete_data_dir_and_none_are_accepted(tmp_path):
    shutil.copytree(ROOT / "cards", tmp_path / "data" / "cards")
    shutil.copytree(ROOT / "openapi", tmp_path / "data" / "openapi")
    for environ in ({}, {"CDS_DATA_DIR": str(tmp_path / "data")}):
        load_settings({"CDS_DATABASE_URL": f"sqlite:///{tmp_path}/cds.db", "CDS_PATIENT_HASH_SECRET": SECRET}, environ=environ, probes="all")


WHEEL_CALL = textwrap.dedent("""
    import json, sys
    import cds_service
    from cds_service import data_files
    from cds_service.app import create_app
    print(cds_service.__file__)
    print(data_files.data_dir())
    app = create_app({"CDS_DATABASE_URL": sys.argv[1], "CDS_AUTH_REQUIRED": "false",
                      "CDS_PATIENT_HASH_SECRET": "%s"})
    client = app.test_client()
    body = json.loads((data_files.data_dir() / "fhir_fixtures/requests/patient-view.json").read_text())
    answer = client.post("/cds-services/osteoporosis-patient-view", json=body)
    print(answer.status_code, len(answer.get_json()["cards"]))
    print(client.get("/guidance/C-TX-BP").status_code)
""" % SECRET)


def test_a_built_package_answers_hook_calls_without_cds_data_dir(tmp_path):
    """What a wheel holds: setup.py's build_py, run on a copy of the
    checkout (as `pip wheel .` runs it), then the built package alone on
    sys.path, away from the checkout, with no CDS_DATA_DIR."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy(ROOT / name, source)
    ignore = shutil.ignore_patterns("__pycache__", "realworld")
    for name in ("cds_service", "cards", "openapi", "fhir_fixtures"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "-d", str(lib)], cwd=source, check=True,
                   capture_output=True, env=_env(tmp_path))
    shutil.rmtree(source)
    run = tmp_path / "run"
    run.mkdir()
    env = _env(tmp_path)
    env["PYTHONPATH"] = str(lib)
    del env["CDS_PATIENT_HASH_SECRET"]
    result = subprocess.run([sys.executable, "-c", WHEEL_CALL, f"sqlite:///{run}/cds.db"], cwd=run, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    package, data, answer, guidance = result.stdout.strip().splitlines()[-4:]
    assert package == str(lib / "cds_service" / "__init__.py")
    assert data == str(lib / "cds_service" / "_bundled")
    status, count = answer.split()
    assert status == "200" and int(count) >= 1
    assert guidance == "200"
