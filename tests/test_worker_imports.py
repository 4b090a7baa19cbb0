"""What a worker loads (issue 15, memory): the app as production's factory
builds it answers hook calls that bring their prefetch without importing
requests, the jsonschema package or markdown-it; each is imported when
first needed (a refused request, a guidance page). In a fresh interpreter,
since the test process has imported everything already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.test_server import ROOT

SCRIPT = textwrap.dedent("""
    import json, sys
    from benchmarks.generate import patient_view_request
    from cds_service.server import _default_factory

    LAZY = ("requests", "urllib3", "jsonschema", "referencing", "markdown_it")
    app = _default_factory()
    client = app.test_client()
    out = {"after_start": [m for m in LAZY if m in sys.modules]}
    answer = client.post("/cds-services/osteoporosis-patient-view", json=patient_view_request(50))
    out["call"] = answer.status_code, len(answer.get_json()["cards"])
    out["after_call"] = [m for m in LAZY if m in sys.modules]
    refused = client.post("/cds-services/osteoporosis-patient-view", json={"hook": "patient-view"})
    out["refused"] = refused.status_code, refused.get_json()["error"]
    out["after_refused"] = [m for m in LAZY if m in sys.modules]
    card_id = answer.get_json()["cards"][0]["source"]["topic"]["code"]
    out["page"] = client.get(f"/guidance/{card_id}").status_code
    out["after_page"] = [m for m in LAZY if m in sys.modules]
    print(json.dumps(out))
""")


def test_a_worker_loads_http_schema_and_markdown_libraries_only_when_needed(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PROMETHEUS_"))},
           "CDS_DATABASE_URL": f"sqlite:///{tmp_path / 'cds.db'}", "CDS_AUTH_REQUIRED": "false",
           "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["after_start"] == []
    assert out["call"][0] == 200 and out["call"][1] >= 1
    assert out["after_call"] == []
    assert out["refused"] == [400, "invalid_request"]
    assert out["after_refused"] == ["jsonschema", "referencing"]
    assert out["page"] == 200
    assert out["after_page"] == ["jsonschema", "referencing", "markdown_it"]
