"""Every chart of the real-world corpus (fhir_fixtures/realworld/synthea:
Synthea patients aged 50+, nobody here wrote them) through patient-view, on
the prefetch path and through a local FHIR server that pages at 20 with
both short and query-repeating `next` links: no 4xx/5xx, and the same cards
on every path (the fetch path must read exactly what a prefetch holds)."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from cds_service import fixtures as fx
from cds_service.fhir.prefetch import render_template
from cds_service.services.prefetch_templates import PREFETCH
from fhir_test_server import FhirTestServer

PV = "/cds-services/osteoporosis-patient-view"
TODAY = dt.date.today()
PATHS = fx.realworld_paths("synthea")


def strip_uuids(value):
    if isinstance(value, dict):
        return {k: strip_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [strip_uuids(v) for v in value]
    return value


def body(pid, prefetch, fhir_server):
    return {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "fhirServer": fhir_server,
            "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                  "scope": "patient/*.read", "subject": "cds-service"},
            "context": {"patientId": pid, "userId": "Practitioner/example"}, "prefetch": prefetch}


@pytest.fixture(scope="module")
def charts():
    out = []
    for path in PATHS:
        resources = fx.load_realworld(path, today=TODAY)
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        out.append((path.name, pid, resources))
    return out


def test_the_corpus_is_here():
    assert len(PATHS) == 139


@pytest.mark.parametrize("next_style", ["short", "repeat"])
def test_every_chart_same_cards_on_prefetch_and_fetch_paths(make_app, charts, next_style):
    with FhirTestServer([], page_size=20, next_style=next_style) as server:
        app = make_app(CDS_ALLOWED_FHIR_SERVERS=server.base, CDS_ALLOW_LOOPBACK_HTTP="true")
        client = app.test_client()
        problems = []
        for name, pid, resources in charts:
            server.set_resources(resources)
            prefetch = {key: server.store.answer(render_template(template, {"patientId": pid}))
                        for key, template in PREFETCH.items()}
            sent = client.post(PV, json=body(pid, prefetch, server.base))
            fetched = client.post(PV, json=body(pid, {}, server.base))
            if sent.status_code != 200 or fetched.status_code != 200:
                problems.append(f"{name}: {sent.status_code} / {fetched.status_code} "
                                f"{fetched.get_data(as_text=True)[:300]}")
                continue
            if strip_uuids(sent.get_json()) != strip_uuids(fetched.get_json()):
                problems.append(f"{name}: cards differ between the prefetch and fetch paths")
        assert not problems, "\n".join(problems)
        assert any("_offset=" in r or "_getpages=" in r for r in server.requests), "no chart needed a second page"
