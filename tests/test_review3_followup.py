"""Third clinical review (follow-up): ServiceRequests that are no order, healing-phase
fracture codes before hands-on treatment, and a secondary-cause panel that leaves out
what is on record. Each pinned on its review3-* fixture through the real HTTP endpoint,
beyond the expect/forbid tags that test_fixture_scenarios checks."""

from __future__ import annotations

import datetime as dt

import pytest

from cds_service import fixtures as fx
from cds_service.app import create_app
from tests.conftest import TEST_SECRET
from tests.test_fixture_scenarios import SERVICE_IDS, hook_body

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('review3')}/cds.db",
                      "CDS_AUTH_REQUIRED": "false", "CDS_PATIENT_HASH_SECRET": TEST_SECRET,
                      "CDS_ALLOWED_FHIR_SERVERS": "https://fhir.example.org/r4", "CDS_INFO_CARD_BUDGET": "1000",
                      "CDS_ROUTINE_CARD_BUDGET": "1000"})
    app.testing = True
    return app.test_client()


def cards(client, name, hook="patient-view"):
    bundle = fx.load_patient(name, today=TODAY)
    resp = client.post(f"/cds-services/{SERVICE_IDS[hook]}", json=hook_body(bundle, hook))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


# --- 1. A ServiceRequest is care arranged only as an order in force ------------------

@pytest.mark.parametrize("name", ["review3-care-pt-referral-proposal", "review3-care-pt-referral-plan",
                                  "review3-care-pt-referral-option", "review3-care-pt-referral-on-hold",
                                  "review3-care-pt-referral-status-unknown", "review3-care-pt-referral-no-intent"])
def test_a_referral_that_is_no_order_in_force_is_not_care_done(client, name):
    """FHIR R4 request-intent: a proposal, plan or option only suggests care; request-status
    on-hold withdraws the authorisation for now, unknown may be any status. None of them is a
    PT referral done: the exercise card fires and does not list it as care on record."""
    card = cards(client, name)["C-EXERCISE"]
    assert "Physical therapy ordered" not in card["detail"]
    assert "Prescribe" in card["detail"]


@pytest.mark.parametrize("name", ["review3-care-near-miss-pt-referral-original-order-completed",
                                  "review3-care-near-miss-pt-referral-directive",
                                  "c-exercise-near-miss-pt-referral-11-months"])
def test_an_order_or_directive_is_care_done(client, name):
    assert "C-EXERCISE" not in cards(client, name)


def test_a_dxa_proposal_is_not_a_dxa_ordered(client):
    """Monitoring reads a DXA already ordered from the same care list: a proposal is none."""
    due = cards(client, "review3-care-dxa-order-proposal")["C-MON-DXA-DUE"]
    assert "already ordered" not in due["detail"].lower()
    assert "C-MON-DXA-DUE" not in cards(client, "c-mon-dxa-due-near-miss-dxa-ordered")


# --- 2. A fracture coded at a recent follow-up visit is still healing -------------------

def _record(*conditions):
    from cds_service.record import build_record
    return build_record({"patient": {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1950-01-01"},
                         "conditions": {"resourceType": "Bundle", "type": "searchset",
                                        "entry": [{"resource": c} for c in conditions]}},
                        today=TODAY, patient_id="p")


def _condition(cid, code, days_ago):
    return {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]},
            "onsetDateTime": (TODAY - dt.timedelta(days=days_ago)).isoformat()}


@pytest.mark.parametrize("letter,healing", [("D", True), ("G", True), ("K", True), ("P", True), ("S", False)])
def test_a_later_encounter_code_marks_the_fracture_healing_without_dating_it(letter, healing):
    """ICD-10-CM 7th characters (Official Guidelines I.C.13.c, I.C.19.a): D/G/K/P are visits in
    the healing phase (routine, delayed, nonunion, malunion), S a sequela. One event either way,
    dated by its initial code (issue 14: C-TX-FAILURE and very-high-risk counting unchanged)."""
    record = _record(_condition("a", "M80.08XA", 700), _condition("b", f"M80.08X{letter}", 20))
    [event] = record.fractures
    assert event.date == TODAY - dt.timedelta(days=700)
    assert event.codes == ("M80.08XA", f"M80.08X{letter}")
    assert event.healing == ((TODAY - dt.timedelta(days=20)) if healing else None)


def test_the_latest_healing_code_of_an_event_counts():
    record = _record(_condition("a", "S72.001A", 300), _condition("b", "S72.001D", 200),
                     _condition("c", "S72.001G", 30), _condition("d", "S72.001S", 5))
    [event] = record.fractures
    assert event.healing == TODAY - dt.timedelta(days=30) and event.date == TODAY - dt.timedelta(days=300)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("name,site", [("review3-massage-vertebral-subsequent-routine-healing-4-weeks", "vertebral"),
                                       ("review3-massage-hip-nonunion-only-code-2-weeks", "hip"),
                                       ("review3-massage-wrist-malunion-6-weeks", "wrist/forearm")])
def test_massage_after_a_recent_follow_up_visit_code_is_critical_and_says_why(client, hook, name, site):
    card = cards(client, name, hook)["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "critical"
    assert f"healing {site} fracture, follow-up" in card["summary"]
    assert "Fracture still healing" in card["detail"] and "still healing: follow-up code" in card["detail"]
    notes = [n["text"] for s in card["suggestions"] for a in s["actions"] if a.get("resource")
             for n in a["resource"].get("note", ())]
    assert any(f"HEALING {site.upper()} FRACTURE" in n for n in notes)


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
@pytest.mark.parametrize("name", ["review3-massage-near-miss-vertebral-sequela-2-weeks",
                                  "review3-massage-near-miss-vertebral-subsequent-13-weeks"])
def test_a_sequela_or_an_older_follow_up_code_is_no_fresh_fracture(client, hook, name):
    card = cards(client, name, hook)["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "warning" and "healing" not in card["summary"] and "fresh" not in card["summary"]
