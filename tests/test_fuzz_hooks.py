"""Bounded, derandomised fuzzing of the hook endpoints and the record builder.

(a) Valid hook requests, mutated (wrong types at every level, missing and
extra members, huge strings, deep nesting, unicode, numbers as strings, null
everywhere), posted to the real app: never a 5xx; every answer is JSON, a
4xx carries `error` and `message`, a 200 carries `cards`.
(b) Odd prefetched FHIR resources in an otherwise valid request: the same
through HTTP, and build_record + the engine (strict, so a rule that raises
fails the test) called directly never raise.

No network: every outbound call goes to `responses`, which answers an empty
Bundle for the allowed FHIR server and a connection error for anything else.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service import engine
from cds_service.app import create_app
from cds_service.fhir import terminology as t
from cds_service.record import build_record, drafts_from_context
from cds_service.rules.settings import DEFAULT
from requests_for_tests import FHIR, PATIENT_ID, SERVICE_FOR, draft_bundle, hook_request

HOOKS = ("patient-view", "order-select", "order-sign")
TODAY = dt.date(2025, 6, 1)

_DIR = Path(tempfile.mkdtemp(prefix="cds-fuzz-"))
APP = create_app({
    "CDS_DATABASE_URL": f"sqlite:///{_DIR}/cds.db",
    "CDS_AUTH_REQUIRED": "false",
    "CDS_PATIENT_HASH_SECRET": "test-patient-hash-secret-0123456789abcdef",
    "CDS_ALLOWED_FHIR_SERVERS": FHIR,
    "CDS_FHIR_RETRIES": "0",
    "CDS_FHIR_TOTAL_TIMEOUT_SECONDS": "2",
    "CDS_LOG_LEVEL": "WARNING",
})
APP.testing = True
CLIENT = APP.test_client()

FUZZ = settings(
    derandomize=True,  # the same examples on every run: CI stays stable
    database=None,
    deadline=None,
    max_examples=int(os.environ.get("CDS_FUZZ_EXAMPLES", "60")),
    suppress_health_check=list(HealthCheck),
)


# ---------------------------------------------------------------------------
# A valid request with real data in it, so mutations reach the readers
# ---------------------------------------------------------------------------

def cc(system: str, code: str, display: str = "") -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding], "text": display or code}


def searchset(*resources: dict) -> dict:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"fullUrl": f"{FHIR}/{r['resourceType']}/{r['id']}", "resource": r,
                       "search": {"mode": "match"}} for r in resources]}


SUBJECT = {"reference": f"Patient/{PATIENT_ID}"}


def rich_prefetch() -> dict:
    return {
        "patient": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female", "birthDate": "1950-03-04",
                    "name": [{"family": "Example", "given": ["Ann"]}]},
        "observations": searchset(
            {"resourceType": "Observation", "id": "t1", "status": "final", "subject": SUBJECT,
             "code": cc(t.LOINC, "38267-1", "DXA Lumbar spine [T-score]"), "effectiveDateTime": "2025-02-01",
             "valueQuantity": {"value": -2.7, "unit": "{T-score}", "system": t.UCUM, "code": "{T-score}"}},
            {"resourceType": "Observation", "id": "f1", "status": "final", "subject": SUBJECT,
             "code": cc(t.LOINC, t.FRAX_MOF, "FRAX major osteoporotic"), "effectiveDateTime": "2025-02-01",
             "valueQuantity": {"value": 22, "unit": "%", "code": "%"}},
            {"resourceType": "Observation", "id": "e1", "status": "final", "subject": SUBJECT,
             "code": cc(t.LOINC, "62238-1", "eGFR"), "effectiveDateTime": "2025-03-01",
             "valueQuantity": {"value": 55, "unit": "mL/min/1.73m2"}},
            {"resourceType": "Observation", "id": "vd", "status": "final", "subject": SUBJECT,
             "code": cc(t.LOINC, "62292-8", "25-OH vitamin D"), "effectiveDateTime": "2025-03-01",
             "valueQuantity": {"value": 40, "unit": "nmol/L"}},
        ),
        "conditions": searchset(
            {"resourceType": "Condition", "id": "c1", "subject": SUBJECT,
             "clinicalStatus": cc(t.CONDITION_CLINICAL, "active"),
             "code": cc("http://hl7.org/fhir/sid/icd-10-cm", "M81.0", "Age-related osteoporosis"),
             "onsetDateTime": "2024-01-10"},
        ),
        "medicationRequests": searchset(
            {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
             "subject": SUBJECT, "authoredOn": "2024-02-01",
             "medicationCodeableConcept": cc(t.RXNORM, "904431", "Alendronic acid 70 MG Oral Tablet"),
             "dosageInstruction": [{"timing": {"repeat": {"boundsPeriod": {"start": "2024-02-01"}}}}]},
        ),
        "medicationAdministrations": searchset(),
        "medicationStatements": searchset(),
        "procedures": searchset(),
        "serviceRequests": searchset(),
        "encounters": searchset(),
    }


def base_request(hook: str) -> dict:
    return hook_request(hook, prefetch=rich_prefetch())


# ---------------------------------------------------------------------------
# Junk values and mutations
# ---------------------------------------------------------------------------

ODD_STRINGS = st.sampled_from([
    "", " ", "2020", "2020-13-45", "not a date", "-2.7", "1e308", "NaN", "Infinity", "null", "true",
    "0", "-0", "\u0000", "\u202e\u0645\u0631\u062d\u0628\u0627", "💥🦴", "\ud800", "a" * 70_000,
    "Patient/../../etc/passwd", "https://evil.example/r4", "{{context.patientId}}",
])


def nested(depth: int) -> Any:
    value: Any = "deep"
    for i in range(depth):
        value = [value] if i % 2 else {"x": value}
    return value


JUNK_SHALLOW = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=10**300, max_value=10**301),  # too big for a float
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    ODD_STRINGS,
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
    st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=3),
    st.sampled_from([10, 60]).map(nested),
)
# Mutations of the request itself may also nest beyond the parser's depth limit.
JUNK = st.one_of(JUNK_SHALLOW, st.just(150).map(nested))


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_paths(child, prefix + (key,)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out.extend(_paths(child, prefix + (i,)))
    return out


def _get(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated(draw, body: dict) -> dict:
    body = copy.deepcopy(body)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "null", "delete", "extra", "stringify"]))
        if not path:  # the body itself
            if op == "extra":
                body[draw(st.text(max_size=10))] = draw(JUNK)
            continue
        parent, last = _get(body, path[:-1]), path[-1]
        current = parent[last]
        if op == "replace":
            parent[last] = draw(JUNK)
        elif op == "null":
            parent[last] = None
        elif op == "delete":
            del parent[last]
        elif op == "extra" and isinstance(current, dict):
            current[draw(st.text(max_size=10))] = draw(JUNK)
        elif op == "stringify" and not isinstance(current, (dict, list)):
            parent[last] = json.dumps(current)  # numbers (and everything else) as strings
        else:
            parent[last] = draw(JUNK)
    return body


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------

def fake_fhir() -> responses.RequestsMock:
    rsps = responses.RequestsMock(assert_all_requests_are_fired=False)
    rsps.add(responses.GET, re.compile(re.escape(FHIR) + r"/.*"),
             json={"resourceType": "Bundle", "type": "searchset", "entry": []})
    return rsps  # any other URL: responses raises ConnectionError


def post(hook: str, body: Any, *, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body)
    with fake_fhir():
        return CLIENT.post(f"/cds-services/{SERVICE_FOR[hook]}", data=data, content_type="application/json")


def assert_well_formed(resp, ok_member: str = "cards") -> None:
    text = resp.get_data(as_text=True)
    assert resp.status_code < 500, text[:500]
    assert resp.status_code in (200, 400, 401, 403, 404, 412, 413, 415, 422), resp.status_code
    assert resp.mimetype == "application/json", resp.mimetype
    answer = json.loads(text)
    if resp.status_code == 200:
        assert ok_member in answer
    else:
        assert isinstance(answer.get("error"), str) and answer["error"]
        assert isinstance(answer.get("message"), str) and answer["message"]


def test_the_unmutated_requests_are_answered_with_cards():
    # The fuzz below starts from these; they must be valid, or it tests only the validator.
    for hook in HOOKS:
        resp = post(hook, base_request(hook))
        assert resp.status_code == 200, resp.get_data(as_text=True)


@pytest.mark.parametrize("hook", HOOKS)
@FUZZ
@given(data=st.data())
def test_mutated_hook_requests_never_fail_the_service(hook, data):
    body = data.draw(mutated(base_request(hook)))
    assert_well_formed(post(hook, body))


FEEDBACK = {"feedback": [{
    "card": "7f6a2b8e-54b0-4b1c-8d0e-3c9f1e2a6b71", "outcome": "overridden",
    "outcomeTimestamp": "2025-06-01T10:00:00Z",
    "overrideReason": {"reason": {"system": "https://example.org/reasons", "code": "x"}, "userComment": "c"},
    "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
}]}


@FUZZ
@given(body=mutated(FEEDBACK), hook=st.sampled_from(HOOKS))
def test_mutated_feedback_never_fails_the_service(body, hook):
    resp = CLIENT.post(f"/cds-services/{SERVICE_FOR[hook]}/feedback", data=json.dumps(body),
                       content_type="application/json")
    assert_well_formed(resp, ok_member="stored")


# ---------------------------------------------------------------------------
# (b) odd FHIR resources
# ---------------------------------------------------------------------------

ODD_DATES = st.one_of(st.sampled_from([
    "2020", "2020-13-45", "not a date", "", "2020-02-30", "0000-01-01", "9999-12-31", "2024-06",
    "2025-05-01T10:00:00+99:00", "-2020-01-01", "20200101", "2025-01-01T", "   2024-01-01  ",
]), JUNK_SHALLOW)
ODD_NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(min_value=-(10**30), max_value=10**30),
    st.integers(min_value=10**300, max_value=10**301), st.sampled_from(["-2.7", "22", "", "1,5"]),
    st.booleans(), st.none(),
)
UNITS = st.one_of(st.sampled_from(["%", "1", "nmol/L", "ng/mL", "mmol/L", "mg/dL", "g/L", "pmol/L",
                                   "{T-score}", "", " ", "kg", "µg/L"]), JUNK_SHALLOW)
LOINCS = sorted(set(t.DXA_T_SCORE_SITES) | set(t.DXA_Z_SCORE_SITES) | t.DXA_BMD_CODES | t.EGFR_CODES
                | t.CALCIUM_TOTAL_CODES | t.ALBUMIN_CODES | t.VITAMIN_D_25OH_CODES | t.PTH_CODES
                | t.FALL_RISK_ASSESSMENT_CODES | {t.FRAX_MOF, t.FRAX_HIP, t.SMOKING_STATUS})
RXNORMS = sorted(code for agent in t.AGENTS.values() for code in agent.rxnorm | agent.oncology_rxnorm)
ICD = "http://hl7.org/fhir/sid/icd-10-cm"


def maybe(strategy):
    return st.one_of(strategy, JUNK_SHALLOW)


CODINGS = st.one_of(
    st.builds(lambda s, c, d: {"system": s, "code": c, "display": d},
              st.sampled_from([t.LOINC, t.SNOMED, t.RXNORM, ICD, t.CPT, "", "urn:x"]),
              st.one_of(st.sampled_from(LOINCS + RXNORMS + ["M81.0", "M80.08XA", "S72.001A", "Z87.310",
                                                            "N18.5", "77080", "97124", "", "  "]), JUNK_SHALLOW),
              maybe(st.sampled_from(["FRAX hip", "T-score hip", "prolia 120 mg", "xgeva", "warfarin"]))),
    JUNK_SHALLOW,
)
CONCEPTS = st.one_of(
    st.builds(lambda coding, text: {"coding": coding, "text": text},
              st.one_of(st.lists(CODINGS, max_size=3), JUNK_SHALLOW), maybe(st.text(max_size=20))),
    JUNK_SHALLOW,
)
QUANTITY = st.one_of(
    st.fixed_dictionaries({"value": ODD_NUMBERS}, optional={"unit": UNITS, "code": UNITS, "system": JUNK_SHALLOW}),
    JUNK_SHALLOW,
)
PERIOD = st.one_of(st.fixed_dictionaries({}, optional={"start": ODD_DATES, "end": ODD_DATES}), JUNK_SHALLOW)
STATUS = st.one_of(st.sampled_from(["final", "active", "completed", "stopped", "on-hold", "draft",
                                    "entered-in-error", "in-progress", "unknown"]), JUNK_SHALLOW)
IDS = st.one_of(st.sampled_from(["a", "b", "c", "d", "t1"]), JUNK_SHALLOW)


def resource(rtype: str, **fields) -> st.SearchStrategy:
    return st.fixed_dictionaries({"resourceType": st.just(rtype), "id": IDS},
                                 optional={"subject": st.just(SUBJECT), **fields})


OBSERVATION = resource(
    "Observation", status=STATUS, code=CONCEPTS, effectiveDateTime=ODD_DATES, effectivePeriod=PERIOD,
    issued=ODD_DATES, valueQuantity=QUANTITY, valueString=maybe(st.text(max_size=20)),
    valueInteger=ODD_NUMBERS, valueBoolean=JUNK_SHALLOW, valueCodeableConcept=CONCEPTS, bodySite=CONCEPTS,
    component=st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
        {"code": CONCEPTS}, optional={"valueQuantity": QUANTITY, "valueString": JUNK_SHALLOW,
                                      "valueCodeableConcept": CONCEPTS}), JUNK_SHALLOW), max_size=3), JUNK_SHALLOW),
)
CONDITION = resource(
    "Condition", code=CONCEPTS, clinicalStatus=CONCEPTS, verificationStatus=CONCEPTS,
    onsetDateTime=ODD_DATES, onsetPeriod=PERIOD, recordedDate=ODD_DATES, onsetString=JUNK_SHALLOW,
)
DOSAGE = st.one_of(st.lists(st.one_of(st.fixed_dictionaries({}, optional={
    "timing": st.one_of(st.fixed_dictionaries({}, optional={"repeat": st.one_of(st.fixed_dictionaries(
        {}, optional={"boundsPeriod": PERIOD, "frequency": ODD_NUMBERS, "period": ODD_NUMBERS}), JUNK_SHALLOW)}), JUNK_SHALLOW),
    "doseAndRate": JUNK_SHALLOW, "text": JUNK_SHALLOW}), JUNK_SHALLOW), max_size=2), JUNK_SHALLOW)
MEDICATION = st.one_of(
    st.fixed_dictionaries({"medicationCodeableConcept": CONCEPTS}),
    st.fixed_dictionaries({"medicationReference": st.one_of(
        st.fixed_dictionaries({}, optional={"reference": st.sampled_from(["#med", "#", "Medication/x"]) | JUNK_SHALLOW,
                                            "display": JUNK_SHALLOW}), JUNK_SHALLOW)},
        optional={"contained": st.one_of(st.lists(st.one_of(st.fixed_dictionaries(
            {"resourceType": st.just("Medication"), "id": st.just("med"), "code": CONCEPTS}), JUNK_SHALLOW), max_size=2),
            JUNK_SHALLOW)}),
)
MED_REQUEST = st.builds(lambda base, med: {**base, **med}, resource(
    "MedicationRequest", status=STATUS, intent=JUNK_SHALLOW, authoredOn=ODD_DATES, dosageInstruction=DOSAGE,
    statusReason=st.one_of(CONCEPTS, st.lists(CONCEPTS, max_size=2)),
    dispenseRequest=st.one_of(st.fixed_dictionaries({}, optional={
        "validityPeriod": PERIOD, "expectedSupplyDuration": QUANTITY, "numberOfRepeatsAllowed": ODD_NUMBERS}), JUNK_SHALLOW),
), MEDICATION)
MED_ADMIN = st.builds(lambda base, med: {**base, **med}, resource(
    "MedicationAdministration", status=STATUS, effectiveDateTime=ODD_DATES, effectivePeriod=PERIOD,
), MEDICATION)
MED_STATEMENT = st.builds(lambda base, med: {**base, **med}, resource(
    "MedicationStatement", status=STATUS, effectiveDateTime=ODD_DATES, effectivePeriod=PERIOD,
    statusReason=st.one_of(CONCEPTS, st.lists(CONCEPTS, max_size=2)),
), MEDICATION)
PROCEDURE = resource("Procedure", status=STATUS, code=CONCEPTS, performedDateTime=ODD_DATES,
                     performedPeriod=PERIOD)
SERVICE_REQUEST = resource("ServiceRequest", status=STATUS, code=CONCEPTS, authoredOn=ODD_DATES,
                           occurrenceDateTime=ODD_DATES, occurrencePeriod=PERIOD, performerType=CONCEPTS)
ENCOUNTER = resource("Encounter", status=STATUS, type=st.one_of(st.lists(CONCEPTS, max_size=2), JUNK_SHALLOW),
                     serviceType=CONCEPTS, period=PERIOD)
PATIENT = st.fixed_dictionaries({"resourceType": st.just("Patient"), "id": st.just(PATIENT_ID)}, optional={
    "birthDate": ODD_DATES, "gender": st.one_of(st.sampled_from(["female", "male", "other", "unknown"]), JUNK_SHALLOW),
    "deceasedBoolean": JUNK_SHALLOW, "extension": JUNK_SHALLOW})
UNEXPECTED = st.one_of(
    st.fixed_dictionaries({"resourceType": st.sampled_from(["Practitioner", "OperationOutcome", "Basic",
                                                           "Medication", "NotAType", "", "Bundle"]),
                           "id": IDS}, optional={"entry": JUNK_SHALLOW}),
    st.fixed_dictionaries({"resourceType": JUNK_SHALLOW}),
    JUNK_SHALLOW,
)
ANY_RESOURCE = st.one_of(OBSERVATION, CONDITION, MED_REQUEST, MED_ADMIN, MED_STATEMENT, PROCEDURE, SERVICE_REQUEST,
                         ENCOUNTER, UNEXPECTED)
KEY_RESOURCES = {
    "observations": OBSERVATION, "conditions": CONDITION, "medicationRequests": MED_REQUEST,
    "medicationAdministrations": MED_ADMIN, "medicationStatements": MED_STATEMENT, "procedures": PROCEDURE,
    "serviceRequests": SERVICE_REQUEST, "encounters": ENCOUNTER,
}


def entries(resources: st.SearchStrategy) -> st.SearchStrategy:
    entry = st.one_of(
        resources.map(lambda r: {"resource": r}),
        resources.map(lambda r: {"resource": r, "search": {"mode": "outcome"}}),
        st.fixed_dictionaries({}, optional={"fullUrl": JUNK_SHALLOW, "search": JUNK_SHALLOW}),  # an entry without resource
        st.just({"resource": None}),
        JUNK_SHALLOW,
    )
    return st.one_of(st.lists(entry, max_size=4), JUNK_SHALLOW)  # entry not a list, sometimes


def bundle(resources: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries({"resourceType": st.just("Bundle")},
                                 optional={"type": st.sampled_from(["searchset", "collection", "x"]),
                                           "entry": entries(resources), "total": JUNK_SHALLOW, "link": JUNK_SHALLOW})


@st.composite
def odd_prefetch(draw) -> dict:
    prefetch = rich_prefetch()
    if draw(st.booleans()):
        prefetch["patient"] = draw(PATIENT)
    for key, strategy in KEY_RESOURCES.items():
        if draw(st.booleans()):
            # Mostly the right type, sometimes anything (a Condition in `observations`).
            prefetch[key] = draw(bundle(st.one_of(strategy, strategy, ANY_RESOURCE)))
    return prefetch


@st.composite
def odd_drafts(draw) -> dict:
    draft = st.one_of(MED_REQUEST.map(lambda r: {**r, "status": "draft"}),
                      resource("ServiceRequest", status=st.just("draft"), code=CONCEPTS, performerType=CONCEPTS),
                      ANY_RESOURCE)
    return draw(st.fixed_dictionaries({"resourceType": st.just("Bundle")}, optional={"entry": entries(draft)}))


SELECTIONS = st.lists(st.sampled_from(["MedicationRequest/a", "ServiceRequest/b", "MedicationRequest/request-123"]),
                      min_size=1, max_size=2)


@st.composite
def odd_request(draw, hook: str, *, valid_context: bool = False) -> dict:
    """A request with odd resources. `valid_context`: draftOrders and selections
    keep the shape the request schema demands (else the web layer's 400 would
    hide the readers), their resources are still odd."""
    body = hook_request(hook, prefetch=draw(odd_prefetch()))
    if hook != "patient-view":
        if valid_context:
            drafts = draw(st.lists(st.one_of(MED_REQUEST, ANY_RESOURCE).filter(lambda r: isinstance(r, dict)),
                                   min_size=1, max_size=3))
            body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": r} for r in drafts]}
        else:
            body["context"]["draftOrders"] = draw(odd_drafts())
    if hook == "order-select" and not valid_context:
        body["context"]["selections"] = draw(st.one_of(SELECTIONS, JUNK_SHALLOW))
    elif hook == "order-select":
        # A selection must name one of the drafts (else 400): up to two of theirs, or a draft added.
        entries = body["context"]["draftOrders"]["entry"]
        named = [f"{r['resourceType']}/{r['id']}" for r in (e["resource"] for e in entries)
                 if isinstance(r.get("resourceType"), str) and isinstance(r.get("id"), str) and r["id"]]
        if not named:
            entries.append({"resource": draft_bundle()["entry"][0]["resource"]})
            named = ["MedicationRequest/request-123"]
        body["context"]["selections"] = named[:2]
    return body


@pytest.mark.parametrize("hook", HOOKS)
@FUZZ
@given(data=st.data())
def test_odd_prefetch_resources_never_fail_the_service(hook, data):
    assert_well_formed(post(hook, data.draw(odd_request(hook, valid_context=data.draw(st.booleans())))))


def run_directly(hook: str, body: dict) -> None:
    context = body["context"]
    record = build_record(body["prefetch"], drafts=drafts_from_context(context), today=TODAY,
                          selections=context.get("selections") if hook == "order-select" else None,
                          settings=DEFAULT)
    assert all(isinstance(ref, str) for ref in record.skipped)
    # strict: a rule (or card template) that raises fails here instead of being logged and skipped
    engine.evaluate(hook, record, TODAY, DEFAULT, patient_id=PATIENT_ID, strict=True)


@pytest.mark.parametrize("hook", HOOKS)
@FUZZ
@given(data=st.data())
def test_record_builder_and_engine_never_raise_on_odd_resources(hook, data):
    run_directly(hook, data.draw(odd_request(hook)))


NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])


@FUZZ
@given(value=NON_FINITE, code=st.sampled_from(LOINCS), unit=UNITS)
def test_non_finite_values_from_a_fhir_server_are_unknown(value, code, unit):
    # A FHIR server's JSON may carry NaN/Infinity (Python's json reads them); HTTP bodies cannot.
    obs = {"resourceType": "Observation", "id": "x", "status": "final", "code": cc(t.LOINC, code),
           "effectiveDateTime": "2025-01-01", "valueQuantity": {"value": value, "unit": unit}}
    record = build_record({"observations": searchset(obs)}, today=TODAY)
    assert not record.bmd and not record.frax and not any(record.labs.values())
    for hook in HOOKS:
        engine.evaluate(hook, record, TODAY, DEFAULT, strict=True)
