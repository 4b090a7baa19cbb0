"""Review 16: after a positive fall-risk screen only C-FALLS was on the screen (the routine-card
budget held C-EXERCISE back) and it read "supervised balance training is on the exercise card": no
physical-therapy (balance) referral was offered. Second-pass 5: a positive screen makes C-EXERCISE
suggest supervised balance training / PT and C-FALLS suggest its follow-up; second-pass 7: the
budget is there for fewer cards, and a positive screen is something to be done now. So C-FALLS
offers the balance training itself whenever C-EXERCISE is not on the screen, and points to it
(leaving its own out) only when it is. Charts count back from the evaluation day."""

from __future__ import annotations

import copy
import datetime as dt
import uuid

import pytest

from cds_service import engine
from cds_service import fixtures as fx
from cds_service.card_policy import CardPolicy
from cds_service.record import build_record
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import coding

PV = "/cds-services/osteoporosis-patient-view"
FHIR = "https://fhir.example.org/r4"
LOINC = "http://loinc.org"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
PT = "444831000124102"   # Referral for physical therapy (C-EXERCISE's pt-referral, C-FALLS's balance referral)
OT = "308453003"         # Referral to occupational therapist (C-FALLS's home-safety referral)
PRODUCTION = CardPolicy(info_budget=2, routine_budget=1)
S = ClinicalSettings()
DAY = dt.date(2026, 12, 1)


def _chart(today: dt.date, *, screen: bool | None = True, t_score: float | None = -1.8,
           fall_history: bool = False) -> list[dict]:
    """A woman of 70 with osteopenia (review chart e22); a fall-risk screen 30 days ago."""
    def ago(days):
        return (today - dt.timedelta(days=days)).isoformat()
    subject = {"reference": "Patient/p-falls"}
    out = [{"resourceType": "Patient", "id": "p-falls", "gender": "female",
            "birthDate": dt.date(today.year - 70, 1, 1).isoformat()}]
    if t_score is not None:
        out.append({"resourceType": "Observation", "id": "dxa", "status": "final", "subject": subject,
                    "code": coding(LOINC, "38263-0"), "effectiveDateTime": ago(100),
                    "valueQuantity": {"value": t_score, "unit": "{T-score}"}})
    if screen is not None:
        out.append({"resourceType": "Observation", "id": "screen", "status": "final", "subject": subject,
                    "code": coding(LOINC, "73830-2"), "effectiveDateTime": ago(30), "valueBoolean": screen})
    if fall_history:  # Z91.81 history of falling, two years ago
        out.append({"resourceType": "Condition", "id": "fall", "subject": subject, "code": coding(ICD, "Z91.81"),
                    "onsetDateTime": ago(730),
                    "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active")})
    return out


def _shown(resources, today: dt.date, policy: CardPolicy | None = PRODUCTION) -> dict[str, dict]:
    record = build_record({"all": {"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]}},
                          today=today, settings=S)
    out = engine.decide("patient-view", record, today, S, policy=policy, strict=True)
    return {c["source"]["topic"]["code"]: c for c in out.cards}


def _referrals(card: dict) -> list[str]:
    return [a["resource"]["code"]["coding"][0]["code"] for s in card.get("suggestions", ()) for a in s["actions"]]


def _no_dangling_exercise_reference(cards: dict[str, dict]) -> None:
    if "C-EXERCISE" not in cards:
        assert not [cid for cid, c in cards.items() if "exercise card" in c["detail"]]


@pytest.mark.parametrize("today", [DAY, DAY + dt.timedelta(days=1)], ids=["day-1", "day-2"])
def test_positive_screen_offers_balance_training_whichever_routine_card_takes_its_turn(today):
    """Production budget (2 info, 1 routine): C-EXERCISE and C-FALLS take turns by day. On either
    day one physical-therapy referral is on the screen, and no card names a card not shown."""
    cards = _shown(_chart(today), today)
    chosen = _shown(_chart(today), today, policy=None)
    assert {"C-EXERCISE", "C-FALLS"} <= set(chosen)
    assert len({"C-EXERCISE", "C-FALLS"} & set(cards)) == 1  # the budget keeps one: the count stays low
    codes = [code for c in cards.values() for code in _referrals(c)]
    assert codes.count(PT) == 1
    _no_dangling_exercise_reference(cards)
    if "C-FALLS" in cards:
        falls = cards["C-FALLS"]
        assert _referrals(falls) == [PT, OT]
        assert falls["selectionBehavior"] == "any"  # both referrals can be taken
        assert "refer for supervised balance training (physical therapy)" in falls["detail"]


def test_positive_screen_without_a_bone_diagnosis_falls_card_offers_balance_training():
    """A history of falling at 70 with no DXA: C-FALLS fires, C-EXERCISE never does."""
    cards = _shown(_chart(DAY, t_score=None, fall_history=True), DAY, policy=None)
    assert "C-EXERCISE" not in cards
    assert _referrals(cards["C-FALLS"]) == [PT, OT]
    _no_dangling_exercise_reference(cards)


def test_both_shown_one_pt_referral_and_falls_points_to_the_exercise_card():
    """Quiet control: with both cards on the screen (no routine limit) the contract's split stands:
    C-EXERCISE refers for supervised training, C-FALLS offers the home-safety follow-up."""
    for policy in (None, CardPolicy(info_budget=2, routine_budget=2)):
        cards = _shown(_chart(DAY), DAY, policy=policy)
        assert {"C-EXERCISE", "C-FALLS"} <= set(cards)
        assert _referrals(cards["C-EXERCISE"]) == [PT]
        assert _referrals(cards["C-FALLS"]) == [OT]
        assert "the exercise card beside this one refers for supervised balance training" in cards["C-FALLS"]["detail"]


def test_negative_screen_stays_quiet():
    """Quiet control: a negative screen 30 days ago: no falls card, no referral added anywhere."""
    for today in (DAY, DAY + dt.timedelta(days=1)):
        for policy in (None, PRODUCTION):
            cards = _shown(_chart(today, screen=False), today, policy=policy)
            assert "C-FALLS" not in cards
            assert not [c for c in cards.values() if PT in _referrals(c)]


def test_no_screen_falls_card_orders_the_assessment_only():
    """Quiet control: no fall-risk assessment: C-FALLS orders one, no referral, no card named."""
    cards = _shown(_chart(DAY, screen=None), DAY, policy=None)
    falls = cards["C-FALLS"]
    assert [s["label"] for s in falls["suggestions"]] == ["Order a fall-risk assessment"]
    assert "exercise card" not in falls["detail"]


# --- through the app: whichever card the day shows first, feedback on it brings the other ----------

def _body(resources) -> dict:
    prefetch = fx.prefetch_from_bundle({"resourceType": "Bundle", "entry": [{"resource": r} for r in resources]})
    return {"hookInstance": str(uuid.uuid4()), "hook": "patient-view", "fhirServer": FHIR,
            "context": {"patientId": "p-falls", "userId": "Practitioner/example"}, "prefetch": prefetch}


def _post(client, body) -> dict[str, dict]:
    resp = client.post(PV, json=copy.deepcopy(body) | {"hookInstance": str(uuid.uuid4())})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


def test_through_the_app_a_pt_referral_is_on_every_screen_after_a_positive_screen(make_app):
    """The production budget; the clinician overrides the routine card shown first (C-EXERCISE on
    some days): the falls card that follows still offers the balance training."""
    client = make_app().test_client()
    body = _body(_chart(dt.date.today()))
    for _ in range(2):
        cards = _post(client, body)
        assert {"C-EXERCISE", "C-FALLS"} & set(cards)
        assert [code for c in cards.values() for code in _referrals(c)].count(PT) == 1
        _no_dangling_exercise_reference(cards)
        card = cards.get("C-EXERCISE") or cards["C-FALLS"]
        entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-01T10:00:00Z",
                 "overrideReason": {"reason": card["overrideReasons"][0]}}
        assert client.post(PV + "/feedback", json={"feedback": [entry]}).status_code == 200


def test_no_fixture_chart_shows_the_falls_card_naming_an_absent_exercise_card():
    """Every fixture patient on patient-view, under the production budget on two
    days (the routine turn changes), with no card quieted and with C-EXERCISE quieted: C-FALLS
    names the exercise card only beside it, and every positive screen it shows carries a PT
    referral on the screen (before the fix: 443 snapshot outcomes named an absent card)."""
    from cds_service.store import QuietMark

    policies = [PRODUCTION, CardPolicy(quiet={"C-EXERCISE": QuietMark("info", DAY)}, info_budget=2, routine_budget=1)]
    charts = [fx.prefetch_from_bundle(fx.load_patient(name, today=DAY)) for name in fx.patient_names()]
    seen = dangling = 0
    for prefetch in charts:
        for today in (DAY, DAY + dt.timedelta(days=1)):
            record = build_record(prefetch, today=today, settings=S)
            for policy in policies:
                cards = {c["source"]["topic"]["code"]: c
                         for c in engine.decide("patient-view", record, today, S, policy=policy).cards}
                falls = cards.get("C-FALLS")
                if falls is None:
                    continue
                seen += 1
                if "exercise card" in falls["detail"] and "C-EXERCISE" not in cards:
                    dangling += 1
                if "was **positive**" in falls["detail"]:
                    assert [code for c in cards.values() for code in _referrals(c)].count(PT) == 1
    assert seen and dangling == 0
