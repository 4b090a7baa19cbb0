"""No patient data in the logs, at DEBUG, on every path a patient's data takes.

Every fixture patient goes through all three hooks and feedback; then a
prefetch-fallback run against a FHIR server (faked by `responses`) that fails
some requests with data in its error bodies; then a rule and a card that fail
with patient data in their exception text. Each fixture is copied with
distinctive sentinel values ("Zqx...") in names, identifiers, addresses,
telecoms, narratives and comments, so a leak cannot hide behind common words.
The logs are read twice: as pytest captures them (caplog, which formats
exception tracebacks too) and as the service writes them (logs.JsonFormatter
on a handler to a StringIO).
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator

import pytest
import responses

from cds_service import engine
from cds_service import fixtures as fx
from cds_service.logs import JsonFormatter
from cds_service.rules.base import Finding
from requests_for_tests import FHIR, SERVICE_FOR, full_prefetch

TODAY = dt.date.today()
SENTINEL = "Zqx"  # no log line may contain it, in any case
TOKEN = "Zqxaccess-token-0123456789"


def with_sentinels(bundle: dict, n: int) -> dict:
    """A copy of a fixture with sentinel PHI in every place a patient's data can be."""
    bundle = copy.deepcopy(bundle)
    for entry in bundle.get("entry") or ():
        res = entry["resource"]
        # A narrative on every resource: any resource body that reaches a log shows it.
        res["text"] = {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Zqxnarrative{n}</div>'}
        if res["resourceType"] == "Patient":
            res["name"] = [{"family": f"Zqxfamily{n}", "given": [f"Zqxgiven{n}"]}]
            res["identifier"] = [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": f"ZQXMRN{n:05d}"},
                                 {"system": "http://hospital.example/mrn", "value": f"Zqx-{n}-{uuid.uuid4().hex[:8]}"}]
            res["address"] = [{"line": [f"{n} Zqxstreet"], "city": "Zqxcity", "postalCode": f"ZQ{n:03d}"}]
            res["telecom"] = [{"system": "phone", "value": f"+1-555-Zqx-{n:04d}"},
                              {"system": "email", "value": f"zqx{n}@example.org"}]
        elif res["resourceType"] in ("Observation", "Condition", "MedicationRequest", "Procedure"):
            res["note"] = [{"text": f"Zqxnote {n}: lives alone"}]
    return bundle


def phi_strings(bundle: dict) -> list[str]:
    """Strings that must not appear in any log line: the sentinels, the birth
    date, every resource's JSON, and negative decimal values such as "-2.7"
    (T-scores; nothing else in a log line is a negative number with a decimal point)."""
    out = [SENTINEL.lower(), TOKEN.lower()]
    for entry in bundle.get("entry") or ():
        res = entry["resource"]
        out.append(json.dumps(res).lower())
        out.append(json.dumps(res, separators=(",", ":")).lower())
        if res["resourceType"] == "Patient" and res.get("birthDate"):
            out.append(res["birthDate"])
    return out


def negative_decimals(bundle: dict) -> set[str]:
    values = set()
    for entry in bundle.get("entry") or ():
        res = entry["resource"]
        for holder in [res, *(res.get("component") or ())]:
            value = (holder.get("valueQuantity") or {}).get("value")
            if isinstance(value, float) and value < 0 and "." in f"{value:g}":
                values.add(f"{value:g}")
    return values


class LogCapture:
    """The service's own JSON log lines, at DEBUG, next to caplog."""

    def __init__(self, caplog):
        self.caplog = caplog
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.setLevel(logging.DEBUG)

    def __enter__(self):
        root = logging.getLogger()
        root.addHandler(self.handler)
        self.caplog.set_level(logging.DEBUG)
        return self

    def __exit__(self, *exc):
        logging.getLogger().removeHandler(self.handler)

    def texts(self) -> Iterator[tuple[str, str]]:
        yield "json", self.stream.getvalue()
        yield "caplog", self.caplog.text  # includes formatted exception tracebacks

    def assert_clean(self, forbidden: list[str], decimals: set[str] = frozenset()) -> None:
        json_lines = self.stream.getvalue().splitlines()
        assert json_lines, "nothing was logged: the capture is not working"
        for line in json_lines:
            json.loads(line)  # every line is one JSON object
        for where, text in self.texts():
            lowered = text.lower()
            for value in forbidden:
                assert value not in lowered, f"{where} log holds patient data {value[:80]!r}"
            for value in decimals:
                assert not re.search(rf"(?<![\w.]){re.escape(value)}(?![\w.])", text), \
                    f"{where} log holds the value {value}"


@pytest.fixture
def debug_app(make_app):
    return make_app(CDS_LOG_LEVEL="DEBUG")


def hook_body(bundle: dict, hook: str) -> dict:
    prefetch = fx.prefetch_from_bundle(bundle)
    context = {"patientId": prefetch["patient"]["id"], "userId": "Practitioner/example"}
    if hook != "patient-view":
        context["draftOrders"] = fx.draft_orders_bundle(bundle)
        if hook == "order-select":
            context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in fx.drafts_from_bundle(bundle)
                                     if fx.is_selected(r)]
            if not context["selections"]:
                # A selection must name a draft order: the public sandbox's bare draft, selected.
                context["draftOrders"]["entry"].append({"resource": {
                    "resourceType": "MedicationRequest", "id": "request-123", "status": "draft", "intent": "order",
                    "subject": {"reference": f"Patient/{context['patientId']}"}}})
                context["selections"] = ["MedicationRequest/request-123"]
    return {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context, "prefetch": prefetch,
            "fhirServer": FHIR,
            "fhirAuthorization": {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                  "scope": "patient/*.read", "subject": "cds"}}


def odd_additions(bundle: dict) -> dict:
    """Resources that make the reader log: an unreadable one (skipped) and a
    FRAX with an ambiguous unit, both carrying sentinel data."""
    bundle = copy.deepcopy(bundle)
    pid = next(e["resource"]["id"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    bundle["entry"] += [
        {"resource": {"resourceType": "Observation", "id": "zz-frax", "status": "final",
                      "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": TODAY.isoformat(),
                      "code": {"coding": [{"system": "http://loinc.org", "code": "90265-0"}], "text": "Zqx frax"},
                      "valueQuantity": {"value": 0.5}}},
        {"resource": {"resourceType": "Condition", "id": "zz-broken", "clinicalStatus": 7,
                      "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M81.0"}],
                               "text": "Zqx broken"}}},
    ]
    return bundle


def test_fixture_patients_through_every_hook_and_feedback(debug_app, caplog):
    client = debug_app.test_client()
    names = fx.patient_names()
    assert names
    card_count = 0
    with LogCapture(caplog) as logs:
        forbidden, decimals = [], set()
        for n, name in enumerate(names):
            bundle = odd_additions(with_sentinels(fx.load_patient(name, today=TODAY), n))
            forbidden += phi_strings(bundle)
            decimals |= negative_decimals(bundle)
            for hook, service in SERVICE_FOR.items():
                resp = client.post(f"/cds-services/{service}", json=hook_body(bundle, hook))
                assert resp.status_code == 200, resp.get_data(as_text=True)
                cards = resp.get_json()["cards"]
                card_count += len(cards)
                if not cards:
                    continue
                feedback = [{"card": c["uuid"], "outcome": "overridden",
                             "outcomeTimestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                             "overrideReason": {"userComment": f"Zqxcomment {n}: patient said her sister ..."}}
                            for c in cards]
                actionable = next((c for c in cards if c.get("suggestions")), None)
                if actionable:  # advice-only cards (e.g. C-MON-ONTX) cannot be "accepted"
                    feedback.append({"card": actionable["uuid"], "outcome": "accepted",
                                     "outcomeTimestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                                     "acceptedSuggestions": [{"id": s["uuid"]} for s in actionable["suggestions"]]})
                resp = client.post(f"/cds-services/{service}/feedback", json={"feedback": feedback})
                assert resp.status_code == 200, resp.get_data(as_text=True)
        logs.assert_clean(forbidden, decimals)
    assert card_count > 0, "no card fired: the run did not exercise the card paths"
    # The logs did see the run: request lines with ids only.
    assert '"service_id": "osteoporosis-patient-view"' in logs.stream.getvalue()
    assert "resources skipped" in logs.stream.getvalue()


def test_prefetch_fallback_with_failing_requests(debug_app, caplog):
    client = debug_app.test_client()
    bundle = with_sentinels(fx.load_patient(fx.patient_names()[0], today=TODAY), 99)
    prefetch = fx.prefetch_from_bundle(bundle)
    pid = prefetch["patient"]["id"]
    error_body = {"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": "exception",
        "diagnostics": "Zqx: query for patient Zqxfamily99 born " + prefetch["patient"]["birthDate"] + " failed"}]}
    with LogCapture(caplog) as logs, responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.GET, f"{FHIR}/Patient/{pid}", json=prefetch["patient"])
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Observation\?.*"), json=prefetch["observations"])
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Condition\?.*"), json=prefetch["conditions"])
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationRequest\?.*"),
                 json=prefetch["medicationRequests"])
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationAdministration\?.*"),
                 json=prefetch["medicationAdministrations"])
        # Optional keys fail, with patient data in what the server says.
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/MedicationStatement\?.*"), json=error_body, status=500)
        rsps.add(responses.GET, re.compile(rf"{re.escape(FHIR)}/Procedure\?.*"),
                 body="<html>Zqx error page for Zqxgiven99</html>", status=400)
        body = hook_body(bundle, "patient-view")
        body["prefetch"] = {}
        resp = client.post(f"/cds-services/{SERVICE_FOR['patient-view']}", json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        assert len(rsps.calls) >= 7
        # A required key that fails: 412, still nothing in the logs.
        rsps.replace(responses.GET, f"{FHIR}/Patient/{pid}", json=error_body, status=503)
        body["hookInstance"] = str(uuid.uuid4())
        resp = client.post(f"/cds-services/{SERVICE_FOR['patient-view']}", json=body)
        assert resp.status_code == 412
        logs.assert_clean(phi_strings(bundle) + [json.dumps(error_body).lower(), "lives alone"],
                          negative_decimals(bundle))
    assert "optional prefetch key unavailable" in logs.stream.getvalue()


def test_a_failing_rule_or_card_logs_no_patient_data(debug_app, caplog, monkeypatch):
    client = debug_app.test_client()
    bundle = with_sentinels(fx.load_patient(fx.patient_names()[0], today=TODAY), 7)
    family = "Zqxfamily7"

    def crashing_rule(record, today, settings):
        # The kind of message Python writes: it quotes the value.
        raise ValueError(f"could not convert {family!r} born {record.birth_date} with T {record.lowest_t}")

    def bad_card_rule(record, today, settings):
        return [Finding("C-TX-BP", facts=(f"{family} T-score -2.7",), variables={"nope": family},
                        suggestions=("no-such-suggestion",))]

    real = engine.rules_for
    monkeypatch.setattr(engine, "rules_for", lambda hook: [crashing_rule, bad_card_rule, *real(hook)])
    with LogCapture(caplog) as logs:
        resp = client.post(f"/cds-services/{SERVICE_FOR['patient-view']}", json=hook_body(bundle, "patient-view"))
        assert resp.status_code == 200
        logs.assert_clean(phi_strings(bundle), negative_decimals(bundle))
    text = logs.stream.getvalue()
    assert "rule crashing_rule failed" in text and '"error_type": "ValueError"' in text
    assert re.search(r"card C-TX-BP (could not be rendered|: suggestion no-such-suggestion dropped)", text)


def test_ignored_and_skipped_resources_are_logged_by_type_and_reason_only(debug_app, caplog):
    """Review finding 6: the `record: ignored` line gave `Type/id` of what it ignored: the
    context Patient's id (its Patient ignored for a birthDate in 1800), another patient's id,
    and resource ids that are free text (a name, a date of birth, an SSN, 3 KB of it)."""
    client = debug_app.test_client()
    pid = "Zqx-context-patient-8"
    free_text = "Zqx Jane Doe DOB 1950-01-01 SSN 123-45-6789 " + "x" * 3000
    t_score = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{pid}"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "38267-1"}]},
               "effectiveDateTime": TODAY.isoformat(), "valueQuantity": {"value": -40, "unit": "{T-score}"}}
    unreadable = {"resourceType": "MedicationRequest", "id": "Zqx3 Jane Doe", "status": "completed", "intent": "order",
                  "subject": {"reference": f"Patient/{pid}"},
                  "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                            "code": "904431"}]},
                  "dispenseRequest": "a supply that is no object"}
    prefetch = {
        **full_prefetch(),
        "patient": {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1800-01-01"},
        "observations": {"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {**t_score, "id": free_text}},  # an implausible value
            {"resource": {**t_score, "id": "Zqx2 Jane Doe", "subject": {"reference": "Patient/Zqx-other-77"}}}]},
        "medicationRequests": {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": unreadable}]},
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": [
            {"resource": {"resourceType": "Patient", "id": "Zqx-other-patient-77"}}]},
    }
    body = {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "prefetch": prefetch,
            "context": {"patientId": pid, "userId": "Practitioner/example"}}
    with LogCapture(caplog) as logs:
        resp = client.post(f"/cds-services/{SERVICE_FOR['patient-view']}", json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        logs.assert_clean([SENTINEL.lower(), pid.lower(), "jane doe", "123-45-6789", "xxxxxxxx"])
    lines = [json.loads(line)["message"] for line in logs.stream.getvalue().splitlines()]
    ignored = next(m for m in lines if m.startswith("record: ignored"))
    assert ignored == ("record: ignored 4 resources or values: Observation foreign-patient 1, "
                       "Observation implausible-value 1, Patient foreign-patient 1, Patient implausible-value 1")
    assert "record: skipped 1 unreadable resources: MedicationRequest 1" in lines


def test_the_formatter_drops_extras_it_does_not_know(caplog):
    # The second guard: a stray extra with a resource in it is not written out.
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("cds_service.test_phi")
    log.addHandler(handler)
    try:
        log.warning("oops", extra={"resource": {"name": "Zqxname"}, "count": 3})
    finally:
        log.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["count"] == 3 and "resource" not in line and SENTINEL not in stream.getvalue()


def test_debug_level_does_not_open_urllib3_request_lines(make_app):
    # urllib3 logs each outbound request line at DEBUG: a FHIR search URL holds the patient id.
    make_app(CDS_LOG_LEVEL="DEBUG")
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("urllib3.connectionpool").getEffectiveLevel() >= logging.WARNING
    make_app(CDS_LOG_LEVEL="ERROR")
    assert logging.getLogger("urllib3").getEffectiveLevel() == logging.ERROR
