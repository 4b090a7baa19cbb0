"""Third clinical review (follow-up): ServiceRequests that are no order, healing-phase
fracture codes before hands-on treatment, and a secondary-cause panel that leaves out
what is on record. Each pinned on its review3-* fixture through the real HTTP endpoint,
beyond the expect/forbid tags that test_fixture_scenarios checks."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.unbudgeted import fixture_cards, unbudgeted_client

TODAY = dt.date.today()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return unbudgeted_client(tmp_path_factory, "review3")


def cards(client, name, hook="patient-view"):
    return fixture_cards(client, name, hook, TODAY)


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


# --- 3. The secondary-cause panel leaves out what is on record -------------------------

def _panel(card):
    return [(a["resource"]["code"].get("coding") or [{}])[0].get("code")
            for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == "create"]


def test_only_the_test_not_on_record_is_suggested_and_the_text_says_so(client):
    card = cards(client, "review3-secondary-man-66-panel-on-record-but-testosterone")["C-SECONDARY-EVAL"]
    assert _panel(card) == ["2986-8"]
    assert card["suggestions"][0]["label"] == ("Order the secondary-cause tests not on record in the last 12 "
                                               "months (Morning total testosterone)")
    assert "Drop the tests" not in card["detail"]
    assert "not on record in the last 12 months" in card["detail"]
    assert "left out of the panel: serum calcium (" in card["detail"] and "TSH (" in card["detail"]


def test_tests_older_than_the_lab_window_are_suggested_again(client):
    card = cards(client, "review3-secondary-man-66-tests-14-months-ago")["C-SECONDARY-EVAL"]
    assert {"2731-8", "1751-7", "2777-1", "6768-6", "58410-2", "3016-3", "24351-9", "31017-7", "6874-2",
            "2986-8"} == set(_panel(card))


def test_the_young_adult_branch_keeps_its_reason_and_leaves_out_what_is_on_record(client):
    card = cards(client, "review3-secondary-man-48-tsh-and-blood-count-on-record")["C-SECONDARY-EVAL"]
    assert card["summary"].startswith("Man under 50 with low bone density for age")
    assert "drug treatment is a specialist decision" in card["detail"]
    assert "3016-3" not in _panel(card) and "58410-2" not in _panel(card) and "2986-8" in _panel(card)
    assert "C-SECONDARY-EVAL" not in cards(client, "review3-secondary-man-48-whole-panel-on-record")


def test_beside_the_baseline_card_the_other_tests_on_record_keep_it_quiet(client):
    shown = cards(client, "review3-secondary-man-66-no-basic-labs-other-tests-on-record")
    assert "C-SECONDARY-EVAL" not in shown and "C-LAB-BASELINE" in shown


def test_with_nothing_on_record_the_panel_is_whole_and_says_it_truthfully(client):
    card = cards(client, "c-secondary-eval-man-48-low-z")["C-SECONDARY-EVAL"]
    assert card["suggestions"][0]["label"] == "Order the secondary-cause laboratory panel (with testosterone)"
    assert len(_panel(card)) == 13
    assert "No test of the panel is on record in the last 12 months." in card["detail"]
    assert "Drop the tests" not in card["detail"]


def _woman_40(*observations):
    from cds_service.record import build_record
    fracture = {"resourceType": "Condition", "id": "f", "subject": {"reference": "Patient/p"},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M80.031A"}]},
                "onsetDateTime": (TODAY - dt.timedelta(days=200)).isoformat()}
    return build_record({"patient": {"resourceType": "Patient", "id": "p", "gender": "female",
                                     "birthDate": (TODAY - dt.timedelta(days=40 * 366)).isoformat()},
                         "conditions": {"resourceType": "Bundle", "entry": [{"resource": fracture}]},
                         "observations": {"resourceType": "Bundle", "entry": [{"resource": o} for o in observations]}},
                        today=TODAY, patient_id="p")


def _result(code, days_ago=30, **value):
    return {"resourceType": "Observation", "id": f"o{code}", "status": "final", "subject": {"reference": "Patient/p"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": (TODAY - dt.timedelta(days=days_ago)).isoformat(),
            **(value or {"valueQuantity": {"value": 1.0}})}


FEMALE_PANEL = {"17861-6": 9.4, "1751-7": 4.0, "62292-8": 30, "2731-8": 40, "98979-8": 90, "2777-1": 3.5,
                "6768-6": 70, "718-7": 13.5, "3016-3": 1.5, "24351-9": 1, "31017-7": 1, "6874-2": 150}


def test_a_premenopausal_woman_needs_no_testosterone_and_a_result_needs_a_value():
    from cds_service.rules import treatment as tx
    from cds_service.rules.settings import ClinicalSettings

    settings = ClinicalSettings()
    whole = [_result(code, valueQuantity={"value": v}) for code, v in FEMALE_PANEL.items()]
    assert tx.secondary_evaluation(_woman_40(*whole), TODAY, settings) == []
    # a TSH with no result (data absent) is no test done: the card asks for it, and for it only
    absent = [o for o in whole if o["id"] != "o3016-3"] + [
        _result("3016-3", valueQuantity=None, dataAbsentReason={"text": "Sample haemolysed"})]
    for o in absent:
        if o.get("valueQuantity") is None:
            o.pop("valueQuantity")
    [finding] = tx.secondary_evaluation(_woman_40(*absent), TODAY, settings)
    assert finding.suggestions == ("panel-female",)
    assert set(tx.panel_tests("panel-female")) - set(finding.left_out) == {"tsh"}


def test_a_test_result_does_not_wake_a_quieted_card():
    """Feedback quiets a card until new data makes it fire (second-pass 7): a test result that
    shortens the panel is no such data; the trigger stays that of the diagnosis and labs."""
    from cds_service.rules import treatment as tx
    from cds_service.rules.settings import ClinicalSettings

    settings = ClinicalSettings()
    before = tx.secondary_evaluation(_woman_40(), TODAY, settings)[0]
    after = tx.secondary_evaluation(_woman_40(_result("3016-3", days_ago=2)), TODAY, settings)[0]
    assert after.left_out == ("tsh",) and after.trigger == before.trigger


def test_the_panels_in_code_are_the_panels_of_the_card():
    from cds_service.card_render import load_card
    from cds_service.rules import treatment as tx

    for s in load_card("C-SECONDARY-EVAL")["suggestions"]:
        assert tx.panel_tests(s["key"]) == tuple(a["resource"] for a in s["actions"]), s["key"]


def test_the_discovery_prefetch_asks_for_every_panel_test(client):
    safety = next(s for s in client.get("/cds-services").get_json()["services"]
                  if s["id"] == "osteoporosis-patient-view")["prefetch"]["safetyLabs"]
    for code in ("2777-1", "3016-3", "58410-2", "718-7", "24351-9", "31017-7", "6874-2", "2986-8"):
        assert f"http://loinc.org|{code}" in safety, code


def test_render_drops_left_out_actions_and_a_suggestion_left_empty():
    from cds_service.card_render import render
    from cds_service.rules.base import Finding

    variables = {"reason": "r", "subject": "s", "panel_note": "n", "max_age": "12"}
    full = render(Finding("C-SECONDARY-EVAL", variables=variables, suggestions=("panel-female-extra",)),
                  patient_id="p", today=TODAY, strict=True)
    assert full["suggestions"][0]["label"].startswith("Order the other secondary-cause tests (blood count")
    short = render(Finding("C-SECONDARY-EVAL", variables=variables, suggestions=("panel-female-extra",),
                           left_out=("tsh", "celiac")), patient_id="p", today=TODAY, strict=True)
    assert [a["description"] for a in short["suggestions"][0]["actions"]] == [
        "Complete blood count", "Serum protein electrophoresis with free light chains",
        "24-hour urine calcium and creatinine"]
    assert short["suggestions"][0]["label"] == (
        "Order the other secondary-cause tests not on record in the last 12 months (Complete blood count, "
        "Serum protein electrophoresis with free light chains, 24-hour urine calcium and creatinine)")
    empty = render(Finding("C-SECONDARY-EVAL", variables=variables, suggestions=("panel-female-extra",),
                           left_out=("blood-count", "tsh", "protein-electrophoresis", "celiac", "urine-calcium")),
                   patient_id="p", today=TODAY, strict=True)
    assert "suggestions" not in empty
