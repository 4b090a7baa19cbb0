"""Course-of-therapy rules (cds_service.rules.follow_up) and C-LIFESTYLE:
boundaries, dose-date sources, mutual exclusion and suggestion choice."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from cds_service import engine
from cds_service.fhir import terminology as t
from cds_service.record import build_record
from cds_service.rules import follow_up, lifestyle
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import TODAY, coding

S = ClinicalSettings()
DMAB = coding(t.RXNORM, "993452", "1 ML denosumab 60 MG/ML Prefilled Syringe")
XGEVA = {"text": "Xgeva (denosumab) 120 mg/1.7 mL"}
ZOL = coding(t.RXNORM, "705824")
ALN = coding(t.RXNORM, "904431")
TPTD = coding(t.RXNORM, "1435115")
ROMO = {"text": "romosozumab 210 mg"}


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def request(med, status="active", authored=400, rid=None, bounds=None):
    r = {"resourceType": "MedicationRequest", "id": rid or f"mr{id(med)}{authored}{status}", "status": status,
         "intent": "order", "medicationCodeableConcept": med, "authoredOn": ago(authored)}
    if bounds:
        r["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {k: ago(v) for k, v in bounds.items()}}}}]
    return r


def given(med, days, rid=None):
    return {"resourceType": "MedicationAdministration", "id": rid or f"ma{id(med)}{days}", "status": "completed",
            "medicationCodeableConcept": med, "effectiveDateTime": ago(days)}


def statement(med, days):
    return {"resourceType": "MedicationStatement", "id": f"ms{days}", "status": "completed",
            "medicationCodeableConcept": med, "effectiveDateTime": ago(days)}


def obs(code, days, value=None, concept=None, oid=None):
    r = {"resourceType": "Observation", "id": oid or f"o{code}{days}", "status": "final",
         "code": coding(t.LOINC, code), "effectiveDateTime": ago(days)}
    if value is not None:
        r["valueQuantity"] = {"value": value}
    if concept is not None:
        r["valueCodeableConcept"] = concept
    return r


def condition(system, code, days=300):
    return {"resourceType": "Condition", "id": f"c{code}", "code": coding(system, code), "onsetDateTime": ago(days)}


def record(*resources, t_score=-2.8, egfr=None, ca=9.4, sex="female", today=TODAY, settings=S):
    res = list(resources)
    if t_score is not None:
        res.append(obs("38267-1", 300, t_score, oid="dxa"))
    if egfr is not None:
        res.append(obs("98979-8", 30, egfr, oid="egfr"))
    if ca is not None:  # a recent calcium: the pre-dose lab a denosumab dose waits for
        res.append(obs("17861-6", 30, ca, oid="ca"))
    patient = {"resourceType": "Patient", "id": "p1", "gender": sex, "birthDate": "1952-05-05"}
    return build_record({"patient": patient, "all": {"resourceType": "Bundle", "entry": [{"resource": r} for r in res]}},
                        today=today, settings=settings)


def dmab_course(last_days, status="active"):
    """Denosumab every 183 days, the last dose `last_days` ago, under one standing order."""
    return [request(DMAB, status, authored=last_days + 400, rid="mr-dmab"),
            given(DMAB, last_days + 366), given(DMAB, last_days + 183), given(DMAB, last_days)]


def fired(rec, settings=S):
    return {f.card_id: f for f in engine.run_rules("patient-view", rec, rec.today, settings, strict=True)}


def cards(rec, settings=S):
    return {c["source"]["topic"]["code"]: c
            for c in engine.evaluate("patient-view", rec, rec.today, settings, strict=True)}


DMAB_CARDS = {"C-DMAB-DUE", "C-DMAB-OVERDUE", "C-DMAB-STOP"}


# --- denosumab timing boundaries (module docstring: 183 / 211 / 212 days) ---

@pytest.mark.parametrize("days,expected", [
    (152, None),               # 5 months
    (182, None),               # one day short of 6 months
    (183, "C-DMAB-DUE"),       # 6 months (183 days): due, inclusive
    (184, "C-DMAB-DUE"),       # 6 months + 1 day
    (211, "C-DMAB-DUE"),       # exactly 6 months + 4 weeks: still due
    (212, "C-DMAB-OVERDUE"),   # one day past the grace period
    (220, "C-DMAB-OVERDUE"),   # 7 months + 1 week
    (900, "C-DMAB-OVERDUE"),
])
def test_denosumab_window_boundaries(days, expected):
    got = set(fired(record(*dmab_course(days)))) & DMAB_CARDS
    assert got == ({expected} if expected else set())


def test_months_to_days_convention():
    assert follow_up.months_to_days(6) == 183
    assert follow_up.months_to_days(3) == 91


def test_grace_weeks_setting_moves_the_overdue_boundary():
    short = dataclasses.replace(S, dmab_grace_weeks=2)  # 183 + 14 = 197 last "due" day
    assert set(fired(record(*dmab_course(197), settings=short), short)) & DMAB_CARDS == {"C-DMAB-DUE"}
    assert set(fired(record(*dmab_course(198), settings=short), short)) & DMAB_CARDS == {"C-DMAB-OVERDUE"}


def test_due_card_content_and_dates():
    card = cards(record(*dmab_course(184), egfr=60))["C-DMAB-DUE"]
    assert card["indicator"] == "info"
    assert f"Last denosumab dose on {ago(184)} (184 days ago)" in card["detail"]
    assert ago(184 - 211) in card["summary"]  # grace end = last dose + 211 days
    assert [s["label"] for s in card["suggestions"]] == ["Order the next denosumab 60 mg dose"]
    res = card["suggestions"][0]["actions"][0]["resource"]
    assert res["medicationCodeableConcept"]["coding"][0]["code"] == "993452"
    assert res["subject"] == {"reference": "Patient/p1"} and res["status"] == "draft"
    assert {r["code"] for r in card["overrideReasons"]} >= {"given-elsewhere", "patient-declined"}


def _codes(suggestion):
    out = []
    for a in suggestion["actions"]:
        concept = a["resource"].get("code") or a["resource"].get("medicationCodeableConcept")
        out.append(concept["coding"][0]["code"])
    return out


def test_due_with_egfr_below_30_carries_the_prolia24_plan():
    """Second-pass 2: the next dose rides with the whole PROLIA24 plan."""
    card = cards(record(*dmab_course(190), egfr=25))["C-DMAB-DUE"]
    (suggestion,) = card["suggestions"]
    codes = _codes(suggestion)
    assert codes[0] == "993452"  # the dose first
    assert {"2731-8", "62292-8", "1649-3", "17861-6", "306286007"} <= set(codes)
    timings = [a["resource"].get("occurrenceTiming", {}).get("repeat") for a in suggestion["actions"]]
    assert {"count": 4, "frequency": 1, "period": 1, "periodUnit": "wk"} in timings  # weekly x 4
    assert {"count": 5, "frequency": 1, "period": 1, "periodUnit": "mo"} in timings  # then monthly
    # review 14: the info card's short form in its text (C-SAFE-DMAB-CKD beside it has the whole warning)
    assert "eGFR 25" in card["detail"] and "Prolia boxed warning 2024" in card["detail"]


def test_unknown_egfr_is_not_low():
    finding = fired(record(*dmab_course(190), egfr=None))["C-DMAB-DUE"]
    assert not any("below 30" in f for f in finding.facts)  # no PROLIA24 plan on an unknown value
    # Review: the dose still comes, with the pre-dose kidney function it waits for (Prolia /
    # C-SAFE-PREDOSE-LABS: kidney function and calcium within 90 days before the dose).
    (dose,) = finding.extra_suggestions
    created = [a.resource for a in dose.actions]
    assert created[0]["medicationCodeableConcept"]["coding"][0]["code"] == "993452"
    assert [r["code"]["coding"][0]["code"] for r in created[1:]] == ["2160-0"]
    no_calcium = fired(record(*dmab_course(190), egfr=60, ca=None))["C-DMAB-DUE"]
    assert [a.resource["code"]["coding"][0]["code"] for a in no_calcium.extra_suggestions[0].actions[1:]] == [
        "17861-6", "1751-7"]


# --- where the last dose date comes from --------------------------------------

def test_last_dose_from_order_date_when_no_administration():
    rec = record(request(DMAB, "active", authored=400, rid="a"), request(DMAB, "active", authored=215, rid="b"))
    finding = fired(rec)["C-DMAB-OVERDUE"]
    assert any("last ordered on" in f and "no administration" in f for f in finding.facts)
    rec = record(request(DMAB, "active", authored=190, rid="b"))
    assert "C-DMAB-DUE" in fired(rec)


def test_administration_wins_over_a_later_order_date():
    # Administration 215 days ago; the standing order was written long before: overdue.
    rec = record(request(DMAB, "active", authored=600), given(DMAB, 215))
    assert "C-DMAB-OVERDUE" in fired(rec)


def test_medication_statement_counts_as_a_dose():
    rec = record(request(DMAB, "active", authored=600), statement(DMAB, 190))
    finding = fired(rec)["C-DMAB-DUE"]
    assert any(f"Last denosumab dose on {ago(190)}" in f for f in finding.facts)


def test_next_dose_already_ordered_quiets_due_but_not_overdue():
    due = record(*dmab_course(190), request(DMAB, "active", authored=5, rid="next"))
    assert not set(fired(due)) & DMAB_CARDS
    late = record(*dmab_course(230), request(DMAB, "active", authored=20, rid="next"))
    finding = fired(late)["C-DMAB-OVERDUE"]
    assert any("no dose was given after it" in f for f in finding.facts)


def test_oncology_denosumab_is_not_judged():
    rec = record(request(XGEVA, "active", authored=400), given(XGEVA, 250))
    assert not set(fired(rec)) & DMAB_CARDS


# --- bisphosphonate after denosumab -------------------------------------------

def test_bisphosphonate_after_last_dose_quiets_overdue_but_one_before_does_not():
    assert "C-DMAB-OVERDUE" not in fired(record(*dmab_course(260), given(ZOL, 30)))
    assert "C-DMAB-OVERDUE" not in fired(record(*dmab_course(260), request(ALN, "active", authored=40)))
    # Alendronate stopped before the last denosumab dose is no transition.
    old = request(ALN, "stopped", authored=2000, bounds={"start": 2000, "end": 1500})
    assert "C-DMAB-OVERDUE" in fired(record(*dmab_course(260), old))


def test_overdue_suggestions_respect_contraindications():
    plain = fired(record(*dmab_course(230), egfr=60))["C-DMAB-OVERDUE"]
    assert plain.suggestions == ("denosumab", "zoledronic-acid", "alendronate")
    renal = fired(record(*dmab_course(230), egfr=32))["C-DMAB-OVERDUE"]
    assert renal.suggestions == ("denosumab",)  # 32 < 35 for both bisphosphonates, >= 30 for calcium check
    assert any("Zoledronic acid not suggested: eGFR 32" in f for f in renal.facts)
    esoph = fired(record(*dmab_course(230), condition(t.ICD10CM, "K22.2"), egfr=60))["C-DMAB-OVERDUE"]
    assert esoph.suggestions == ("denosumab", "zoledronic-acid")
    # Review: no kidney function on file -> no one-click infusion (Reclast: creatinine clearance first)
    unknown = fired(record(*dmab_course(230), condition(t.ICD10CM, "K22.2")))["C-DMAB-OVERDUE"]
    assert unknown.suggestions == ()  # the overdue dose is built with its pre-dose kidney function
    assert unknown.extra_suggestions[0].label == "Order the next denosumab 60 mg dose, with the pre-dose labs"
    assert any("Zoledronic acid not suggested: no kidney function in the last 12 months" in f for f in unknown.facts)
    card = cards(record(*dmab_course(230), egfr=60))["C-DMAB-OVERDUE"]
    assert card["indicator"] == "critical" and card["selectionBehavior"] == "at-most-one"
    aln = card["suggestions"][2]["actions"][0]["resource"]
    assert "plain water" in aln["dosageInstruction"][0]["patientInstruction"]
    assert card["suggestions"][1]["actions"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "705824"


# --- stopped denosumab ---------------------------------------------------------

def test_stop_fires_without_bisphosphonate_and_schedules_zoledronate_at_six_months():
    rec = record(*dmab_course(120, status="stopped"), egfr=60)
    got = fired(rec)
    assert set(got) & DMAB_CARDS == {"C-DMAB-STOP"}
    assert got["C-DMAB-STOP"].variables["zoledronate_date"] == ago(120 - 183)
    card = cards(rec)["C-DMAB-STOP"]
    zol = card["suggestions"][0]["actions"][0]["resource"]
    assert zol["dosageInstruction"][0]["timing"]["event"] == [ago(120 - 183)]


def test_stop_summary_names_only_the_bisphosphonates_offered():
    assert cards(record(*dmab_course(120, status="stopped"), egfr=60))["C-DMAB-STOP"]["summary"].endswith(
        "plan zoledronic acid or alendronate")
    # Kidney function 32: below 35 for both zoledronic acid and alendronate.
    card = cards(record(*dmab_course(120, status="stopped"), egfr=32))["C-DMAB-STOP"]
    assert card["summary"].endswith("no bisphosphonate possible: continue denosumab or refer")
    assert "zoledronic" not in card["summary"] and not card.get("suggestions")


def test_stop_in_the_due_window_replaces_due_and_overdue_replaces_stop():
    # second-pass 3: a completed order is a dose given, never a stop: the course is due
    assert set(fired(record(*dmab_course(200, status="completed")))) & DMAB_CARDS == {"C-DMAB-DUE"}
    assert set(fired(record(*dmab_course(200, status="stopped")))) & DMAB_CARDS == {"C-DMAB-STOP"}
    got = fired(record(*dmab_course(240, status="stopped")))
    assert set(got) & DMAB_CARDS == {"C-DMAB-OVERDUE"}
    assert any("Denosumab order stopped" in f for f in got["C-DMAB-OVERDUE"].facts)


def test_stop_zoledronate_date_is_today_once_six_months_have_passed():
    rec = record(request(DMAB, "stopped", authored=195))  # order-date fallback, in the due window
    assert fired(rec)["C-DMAB-STOP"].variables["zoledronate_date"] == TODAY.isoformat()


def test_stop_is_quiet_with_a_planned_bisphosphonate_or_a_newer_active_order():
    planned = request(ALN, "active", authored=5, bounds={"start": -30})
    assert "C-DMAB-STOP" not in fired(record(*dmab_course(120, status="stopped"), planned))
    restarted = record(*dmab_course(120, status="stopped"), request(DMAB, "active", authored=10, rid="again"))
    assert "C-DMAB-STOP" not in fired(restarted)


# --- anabolic follow-on --------------------------------------------------------

def tptd_stopped(end_days, start_days=None):
    start = start_days or end_days + 700
    return request(TPTD, "stopped", authored=start, rid="tptd", bounds={"start": start, "end": end_days})


@pytest.mark.parametrize("end_days,fires", [(61, False), (91, False), (92, True), (122, True)])
def test_anabolic_follow_on_window(end_days, fires):
    assert ("C-ANABOLIC-FOLLOW-ON" in fired(record(tptd_stopped(end_days)))) is fires


def test_anabolic_still_running_is_quiet():
    assert "C-ANABOLIC-FOLLOW-ON" not in fired(record(request(TPTD, "active", authored=500)))
    romo = [request(ROMO, "active", authored=400, rid="romo")] + [given(ROMO, 150 + 30 * k) for k in range(8)]
    assert "C-ANABOLIC-FOLLOW-ON" not in fired(record(*romo))  # 8 doses: course not finished
    # Teriparatide stopped long ago but romosozumab under way now: not finished.
    assert "C-ANABOLIC-FOLLOW-ON" not in fired(record(tptd_stopped(400), *romo[:1], given(ROMO, 10)))


def test_romosozumab_at_twelve_doses_counts_as_finished():
    doses = [given(ROMO, 100 + 30 * k) for k in range(12)]
    finding = fired(record(request(ROMO, "completed", authored=500, rid="romo"), *doses))["C-ANABOLIC-FOLLOW-ON"]
    assert any("12 monthly doses" in f and ago(100) in f for f in finding.facts)
    # Review 16: with the order still active it invites a 13th dose; C-SAFE-ROMO-LIMIT asks to stop
    # it and offers the follow-on, and this card waits.
    active = fired(record(request(ROMO, "active", authored=500, rid="romo"), *doses))
    assert "C-SAFE-ROMO-LIMIT" in active and "C-ANABOLIC-FOLLOW-ON" not in active
    assert "C-ANABOLIC-FOLLOW-ON" not in fired(record(*[given(ROMO, 60 + 30 * k) for k in range(12)]))


def test_antiresorptive_after_the_course_quiets_but_one_before_it_does_not():
    assert "C-ANABOLIC-FOLLOW-ON" not in fired(record(tptd_stopped(150), request(ALN, "active", authored=100)))
    assert "C-ANABOLIC-FOLLOW-ON" not in fired(record(tptd_stopped(150), given(ZOL, 60)))
    before = request(ALN, "stopped", authored=1500, bounds={"start": 1500, "end": 1000})
    assert "C-ANABOLIC-FOLLOW-ON" in fired(record(tptd_stopped(150, start_days=900), before))


def test_anabolic_follow_on_suggestions():
    card = cards(record(tptd_stopped(150), egfr=70))["C-ANABOLIC-FOLLOW-ON"]
    assert card["indicator"] == "warning"
    assert [s["isRecommended"] for s in card["suggestions"]] == [True, False]
    assert card["suggestions"][0]["actions"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "904431"
    no_oral = fired(record(tptd_stopped(150), condition(t.ICD10CM, "K22.0"), egfr=25))["C-ANABOLIC-FOLLOW-ON"]
    assert no_oral.suggestions == ()  # kidney function 25: denosumab only with the PROLIA24 plan
    (plan,) = no_oral.extra_suggestions
    assert any(a.resource and a.resource.get("code", {}).get("coding", [{}])[0].get("code") == "306286007"
               for a in plan.actions)


# --- C-LIFESTYLE -----------------------------------------------------------------

SMOKES = coding(t.SNOMED, "449868002")
NEVER = coding(t.SNOMED, "266919005")


def test_lifestyle_smoker_with_osteoporosis_gets_cessation_order():
    rec = record(obs(t.SMOKING_STATUS, 40, concept=SMOKES))
    card = cards(rec)["C-LIFESTYLE"]
    assert card["indicator"] == "info" and "stop smoking" in card["summary"]
    assert f"Current smoker (recorded {ago(40)})" in card["detail"]
    assert "Lumbar spine T-score -2.8" in card["detail"]
    res = card["suggestions"][0]["actions"][0]["resource"]
    assert res["resourceType"] == "ServiceRequest" and res["code"]["coding"][0]["code"] == "225323000"


def test_lifestyle_quiet_cases():
    assert "C-LIFESTYLE" not in fired(record(obs(t.SMOKING_STATUS, 40, concept=NEVER)))
    assert "C-LIFESTYLE" not in fired(record())                                   # smoking not coded: unknown
    assert "C-LIFESTYLE" not in fired(record(obs(t.SMOKING_STATUS, 40, concept=SMOKES), t_score=-0.5))
    # A later "never smoker" answer outranks an older "smoker" one.
    later = record(obs(t.SMOKING_STATUS, 400, concept=SMOKES, oid="s1"), obs(t.SMOKING_STATUS, 20, concept=NEVER, oid="s2"))
    assert "C-LIFESTYLE" not in fired(later)


def test_lifestyle_alcohol_only_has_no_order_and_fracture_counts():
    rec = record(condition(t.ICD10CM, "F10.20"), condition(t.ICD10CM, "M80.08XA", days=200), t_score=None)
    finding = fired(rec)["C-LIFESTYLE"]
    assert finding.suggestions == () and finding.variables["topics"] == "limit alcohol"
    assert any("F10.20" in f for f in finding.facts) and any("M80.08XA" in f for f in finding.facts)
    assert "suggestions" not in cards(rec)["C-LIFESTYLE"]


def test_lifestyle_smoker_by_condition_with_unknown_sex_and_coded_osteopenia():
    rec = record(condition(t.ICD10CM, "F17.210"), condition(t.ICD10CM, "M85.80"), t_score=None, sex="unknown")
    finding = lifestyle.lifestyle(rec, TODAY, S)[0]
    assert finding.suggestions == ("smoking-cessation",)
    assert any("Osteopenia on the problem list" in f for f in finding.facts)
    assert any(f"Current smoker (recorded {ago(300)})" in f for f in finding.facts)
