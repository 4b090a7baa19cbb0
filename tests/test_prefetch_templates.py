"""Query and reader never disagree: the Observation prefetch templates are
generated from the value sets the reader reads (record.OBSERVATION_SETS and
the fracture sets), and a site's extra value sets reach both."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from urllib.parse import unquote

import pytest

from cds_service import fixtures as fx
from cds_service.config import load_settings
from cds_service.fhir import valuesets as vs
from cds_service.fhir.valuesets import ICD10CM, LOINC, SNOMED
from cds_service.record import FRACTURE_SETS, OBSERVATION_SETS, build_record, wanted
from cds_service.services import prefetch_templates as pt
from fhir_test_server import FhirTestServer

TODAY = dt.date(2026, 3, 2)
OBS_KEYS = tuple(pt.OBSERVATION_KEYS)
LOCAL = "urn:oid:1.2.3.4.5"


@pytest.fixture(autouse=True)
def _shipped_terminology_after():
    yield
    vs.configure(None)  # tests that configure extras must not leak them


def _tokens(template: str) -> list[str]:
    query = template.split("?", 1)[1]
    codes = next(part for part in query.split("&") if part.startswith("code="))[len("code="):]
    return [unquote(token) for token in codes.split(",")]


def _read_sets(t: vs.Terminology) -> list[str]:
    return [v for v in t.ids() if v.startswith((*OBSERVATION_SETS, FRACTURE_SETS))]


def _searchable(t: vs.Terminology, value_set: str) -> set[tuple[str, str]]:
    return {(system, code) for system, codes in t.concept(value_set).codes.items() if system != ICD10CM
            for code in codes}


def _token_of(key: str, system: str, code: str) -> str:
    return code if key in pt.BARE_SNOMED_KEYS and system == SNOMED else f"{system}|{code}"


def test_every_observation_code_the_reader_reads_is_asked_for_under_exactly_one_key():
    t = vs.active()
    asked = {key: _tokens(pt.PREFETCH[key]) for key in OBS_KEYS}
    problems = []
    for value_set in _read_sets(t):
        for system, code in _searchable(t, value_set):
            keys = [k for k in OBS_KEYS if _token_of(k, system, code) in asked[k]]
            if len(keys) != 1:
                problems.append(f"{value_set} {system}|{code}: asked under {keys}")
    assert problems == []
    assert "http://loinc.org|49765-1" in asked["observations"]  # blood calcium (issue 14)
    assert "359817006" in asked["fractureFindings"]              # closed fracture of hip
    assert "http://loinc.org|1995-0" not in asked["observations"]  # ionized calcium: not read, not asked


def test_every_code_asked_for_is_one_the_reader_reads():
    t = vs.active()
    problems = []
    for key in OBS_KEYS:
        for token in _tokens(pt.PREFETCH[key]):
            system, code = token.rsplit("|", 1) if "|" in token else (SNOMED, token)  # bare: SNOMED CT
            obs = {"resourceType": "Observation", "id": "o", "status": "final",
                   "code": {"coding": [{"system": system, "code": code}]}}
            found = wanted(obs)
            if not found or not t.concepts_for(system, code) & found:
                problems.append(f"{key}: {token} is asked for but not read")
    assert problems == []


READS = [  # (code, value) -> what the record holds afterwards
    ((LOINC, "49765-1"), {"valueQuantity": {"value": 2.2, "unit": "mmol/L"}}, lambda r: r.labs["calcium"][0].value == 8.82),
    ((LOINC, "38265-5"), {"valueQuantity": {"value": -2.6}}, lambda r: r.bmd[0].site == "RADIUS"),
    ((LOINC, "39156-5"), {"valueQuantity": {"value": 17.9, "unit": "kg/m2"}}, lambda r: r.labs["bmi"][0].value == 17.9),
    ((LOINC, "80384-1"), {"valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "10828004"}]}},
     lambda r: r.pregnancy_tests[0].positive is True),
    ((SNOMED, "33737001"), {}, lambda r: r.fractures[0].site == "rib"),
]


@pytest.mark.parametrize("coding,value,check", READS, ids=[c[0][1] for c in READS])
def test_codes_new_to_the_queries_are_read(coding, value, check):
    obs = {"resourceType": "Observation", "id": "o1", "status": "final",
           "code": {"coding": [{"system": coding[0], "code": coding[1]}]},
           "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-01-10", **value}
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-01-01", "gender": "female"}
    record = build_record({"patient": patient, "observations": obs}, today=TODAY, patient_id="p1")
    assert check(record)


def test_the_templates_stay_short_enough_for_real_servers():
    """With a 1,000-character server base URL every query fits under CDS_FHIR_MAX_URL_LENGTH's
    floor (4096), and so under the 8 KiB most servers accept, with room for a next link's paging."""
    assert max(len(template) for template in pt.PREFETCH.values()) + 1000 < 4096
    with pytest.raises(ValueError, match="must be at least 4096"):
        load_settings({"CDS_FHIR_MAX_URL_LENGTH": "4095"})


# ---------------------------------------------------------------------------
# A site's codes reach the reader and the queries
# ---------------------------------------------------------------------------

LOCAL_CALCIUM = {
    "resourceType": "ValueSet", "url": "https://github.com/osteoporosis-cds/ValueSet/lab-calcium-total",
    "status": "active",
    "compose": {"include": [{"system": LOCAL, "concept": [{"code": "CA SER&1"}]}]},
}


def _site_folder(tmp_path):
    folder = tmp_path / "valuesets"
    folder.mkdir()
    (folder / "calcium.json").write_text(json.dumps(LOCAL_CALCIUM), encoding="utf-8")
    return folder


def _local_calcium_chart():
    """The C-SAFE-HYPOCA fixture (alendronate ordered, corrected calcium 8.2) with its calcium
    coded only by the site's local code (a space and an ampersand in it, as local codes have)."""
    bundle = copy.deepcopy(fx.load_patient("c-safe-hypoca-alendronate-ca-8-2", today=dt.date.today()))
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] == "Observation" and res["code"]["coding"][0]["code"] == "17861-6":
            res["code"] = {"coding": [{"system": LOCAL, "code": "CA SER&1", "display": "Calcium"}]}
    return bundle


def _order_select(bundle, server_base):
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    drafts = fx.draft_orders_bundle(bundle)
    return {"hookInstance": str(uuid.uuid4()), "hook": "order-select", "fhirServer": server_base,
            "fhirAuthorization": {"access_token": "t", "token_type": "Bearer", "expires_in": 300,
                                  "scope": "patient/*.read", "subject": "cds-service"},
            "context": {"patientId": pid, "userId": "Practitioner/example", "draftOrders": drafts,
                        "selections": [f"MedicationRequest/{e['resource']['id']}" for e in drafts["entry"]]},
            "prefetch": {}}


@pytest.mark.parametrize("with_site_codes", [True, False])
def test_site_codes_flow_into_discovery_the_fetched_query_and_the_reader(tmp_path, make_app, with_site_codes):
    bundle = _local_calcium_chart()
    resources = [e["resource"] for e in bundle["entry"] if e["resource"].get("status") != "draft"]
    extra = {"CDS_EXTRA_VALUESETS_DIR": str(_site_folder(tmp_path))} if with_site_codes else {}
    with FhirTestServer(resources) as server:
        app = make_app(CDS_ALLOWED_FHIR_SERVERS=server.base, CDS_ALLOW_LOOPBACK_HTTP="true", **extra)
        client = app.test_client()
        discovery = client.get("/cds-services").get_json()
        observations = {s["id"]: _tokens(s["prefetch"]["observations"]) for s in discovery["services"]}
        resp = client.post("/cds-services/osteoporosis-order-select", json=_order_select(bundle, server.base))
        assert resp.status_code == 200, resp.get_data(as_text=True)
        cards = {c["source"]["topic"]["code"] for c in resp.get_json()["cards"]}
        asked = [unquote(r) for r in server.requests if "/Observation?" in r]
    local = f"{LOCAL}|CA SER&1"
    if with_site_codes:
        # every service's discovery entry asks for the site's code, the fetch sent it (escaped),
        # the server answered with the local-coded calcium and the reader read it: calcium is low
        assert all(local in tokens for tokens in observations.values())
        assert any(local in r for r in asked)
        assert "C-SAFE-HYPOCA" in cards
    else:
        assert all(local not in tokens for tokens in observations.values())
        assert "C-SAFE-HYPOCA" not in cards  # the calcium is not known: no card on an unknown value
