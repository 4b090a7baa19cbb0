"""The second clinical pass (../shared/clinical/second-pass.md 1-6, 8, 9): the
facts every kidney, course and pregnancy rule shares, and the boundaries of the
new cards beyond what the fixture patients show (they run through HTTP in
test_fixture_scenarios)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from cds_service import card_render, engine
from cds_service.fhir import terminology as t
from cds_service.record import build_record, glucocorticoid_daily_mg
from cds_service.rules import facts
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import TODAY, coding

S = ClinicalSettings()
PID = "p2"


def ago(days: int) -> str:
    return (TODAY - dt.timedelta(days=days)).isoformat()


def obs(code, days, value, unit="", oid=None, **extra):
    r = {"resourceType": "Observation", "id": oid or f"o{code}{days}{value}", "status": "final",
         "code": coding(t.LOINC, code), "effectiveDateTime": ago(days), "valueQuantity": {"value": value, "unit": unit}}
    r.update(extra)
    return r


def cond(code, days=200, system=t.ICD10CM, status=None, cid=None):
    r = {"resourceType": "Condition", "id": cid or f"c{code}{days}", "code": coding(system, code),
         "onsetDateTime": ago(days)}
    if status:
        r["clinicalStatus"] = coding(t.CONDITION_CLINICAL, status)
    return r


def med(concept, days, status="active", rid=None, **extra):
    r = {"resourceType": "MedicationRequest", "id": rid or f"m{days}{status}{id(concept)}", "status": status,
         "intent": "order", "authoredOn": ago(days), "medicationCodeableConcept": concept}
    r.update(extra)
    return r


def given(concept, days):
    return {"resourceType": "MedicationAdministration", "id": f"a{days}{id(concept)}", "status": "completed",
            "medicationCodeableConcept": concept, "effectiveDateTime": ago(days)}


def draft(concept, did="d1", **extra):
    return {"resourceType": "MedicationRequest", "id": did, "status": "draft", "intent": "order",
            "medicationCodeableConcept": concept, **extra}


DMAB = coding(t.RXNORM, "993452")
ZOL = coding(t.RXNORM, "705824")
ALN = coding(t.RXNORM, "904431")
TPTD = coding(t.RXNORM, "1435115")
ABL = {"text": "abaloparatide (Tymlos) 80 mcg"}
ROMO = {"text": "romosozumab (Evenity) 210 mg"}
T_OSTEO = ("38267-1", 200, -2.8)


def record(*resources, sex="female", age=72, drafts=(), today=TODAY, settings=S, t_score=True):
    res = list(resources)
    if t_score:
        res.append(obs(*T_OSTEO, oid="dxa"))
    birth = dt.date(today.year - age, 1, 1).isoformat()
    patient = {"resourceType": "Patient", "id": PID, "gender": sex, "birthDate": birth}
    return build_record({"patient": patient, "all": {"resourceType": "Bundle", "entry": [{"resource": r} for r in res]}},
                        drafts=list(drafts), today=today, settings=settings)


def cards(rec, hook="patient-view", settings=S):
    return {c["source"]["topic"]["code"]: c
            for c in engine.evaluate(hook, rec, rec.today, settings, patient_id=PID, strict=True)}


# ---------------------------------------------------------------------------
# 1. One kidney reading
# ---------------------------------------------------------------------------

def test_coded_kidney_failure_reads_below_every_limit_whatever_the_lab():
    reading = facts.kidney(record(cond("N18.6"), obs("98979-8", 20, 64)), S)
    assert reading.band == facts.FAILURE and reading.coded
    assert reading.below(35) and reading.below(30) and reading.below(15)


def test_coded_ckd_4_is_below_30_not_below_15():
    reading = facts.kidney(record(cond("N18.4"), obs("98979-8", 20, 45)), S)
    assert reading.band == facts.SEVERE and reading.below(30) and not reading.below(15)


def test_ckd_3a_is_not_kidney_failure():
    reading = facts.kidney(record(cond("N18.31"), obs("98979-8", 20, 52)), S)
    assert reading.band == facts.MEASURED and not reading.below(35)


def test_cockcroft_gault_wins_over_an_older_or_same_day_egfr_and_loses_to_a_newer_one():
    same_day = record(obs("2160-0", 20, 1.1, "mg/dL"), obs("29463-7", 20, 48, "kg"), obs("98979-8", 20, 48),
                      age=85)
    reading = facts.kidney(same_day, S)
    # (140 - 85) x 48 / (72 x 1.1) x 0.85 = 28.3
    assert (reading.kind, reading.value) == ("CrCl", 28) and reading.below(35)
    assert any("not used" in f for f in reading.facts)  # the eGFR is shown, not hidden
    man = facts.kidney(record(obs("2160-0", 20, 1.1, "mg/dL"), obs("29463-7", 20, 48, "kg"), sex="male", age=85), S)
    assert man.value == 33  # no 0.85 for men
    newer_egfr = record(obs("2160-0", 200, 1.1, "mg/dL"), obs("29463-7", 200, 48, "kg"), obs("98979-8", 20, 48),
                        age=85)
    assert facts.kidney(newer_egfr, S).kind == "eGFR"


def test_creatinine_in_micromoles_is_converted():
    rec = record(obs("14682-9", 20, 97.24, "umol/L"), obs("29463-7", 20, 48, "kg"), age=85)
    assert facts.kidney(rec, S).value == 28


def test_stale_or_absent_kidney_function_is_unknown_never_normal():
    stale = facts.kidney(record(obs("98979-8", 400, 28)), S)
    assert stale.band == facts.UNKNOWN and not stale.below(35) and not stale.known
    assert any("kidney function unknown" in f for f in stale.facts)
    shorter = dataclasses.replace(S, kidney_lab_max_age_months=6)
    assert facts.kidney(record(obs("98979-8", 200, 28)), shorter).band == facts.UNKNOWN
    assert facts.kidney(record(obs("98979-8", 200, 28)), S).band == facts.SEVERE


def test_dialysis_procedure_counts_only_while_recent():
    hd = {"resourceType": "Procedure", "id": "hd", "status": "completed", "code": coding(t.CPT, "90935"),
          "performedDateTime": ago(30)}
    assert facts.kidney(record(hd), S).dialysis
    old = dict(hd, performedDateTime=ago(500))
    assert facts.kidney(record(old), S).band == facts.UNKNOWN  # e.g. dialysis for an acute kidney injury, recovered
    snomed = dict(hd, code=coding(t.SNOMED, "302497006"))
    assert facts.kidney(record(snomed), S).dialysis


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_every_kidney_rule_uses_the_reading(hook):
    """The unsafe case of the review: dialysis, no eGFR, alendronate ordered."""
    rec = record(cond("Z99.2"), drafts=[draft(ALN)])
    got = cards(rec, hook)
    assert got["C-SAFE-RENAL"]["indicator"] == "warning" and "dialysis" in got["C-SAFE-RENAL"]["summary"]
    pv = cards(record(cond("Z99.2")))
    assert "C-TX-BP" not in pv and "C-TX-DMAB-ALT" in pv
    active = cards(record(cond("N18.5"), med(ALN, 300)))
    assert active["C-SAFE-RENAL"]["indicator"] == "warning"
    supp = active["C-SUPP-CAVD"]
    assert "suggestions" not in supp and "nephrology" in supp["summary"]


# ---------------------------------------------------------------------------
# 2. Label warnings
# ---------------------------------------------------------------------------

def test_hypocalcemia_card_covers_oral_bisphosphonates_and_romosozumab_not_teriparatide():
    low = [obs("17861-6", 20, 8.1, "mg/dL"), obs("1751-7", 20, 4.0, "g/dL")]
    for concept in (ALN, coding(t.RXNORM, "905024"), ROMO, DMAB, ZOL):
        assert "C-SAFE-HYPOCA" in cards(record(*low, drafts=[draft(concept)]), "order-sign"), concept
    assert "C-SAFE-HYPOCA" not in cards(record(*low, drafts=[draft(TPTD)]), "order-sign")


def test_measured_high_calcium_and_unexplained_alp_block_a_pth_analog():
    hi = [obs("17861-6", 20, 10.9, "mg/dL")]
    assert "C-SAFE-ANABOLIC-CONTRA" in cards(record(*hi, drafts=[draft(ABL)]), "order-sign")
    alp = obs("6768-6", 20, 190, "U/L", referenceRange=[{"high": {"value": 120, "unit": "U/L"}}])
    assert "C-SAFE-ANABOLIC-CONTRA" in cards(record(alp, drafts=[draft(TPTD)]), "order-sign")
    # explained: liver disease, or a fracture healing in the last 12 months
    assert "C-SAFE-ANABOLIC-CONTRA" not in cards(record(alp, cond("K74.60"), drafts=[draft(TPTD)]), "order-sign")
    assert "C-SAFE-ANABOLIC-CONTRA" not in cards(record(alp, cond("S52.531A", 60), drafts=[draft(TPTD)]), "order-sign")
    flagged = obs("6768-6", 20, 150, "U/L", interpretation=[coding(
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H")])
    assert "C-SAFE-ANABOLIC-CONTRA" in cards(record(flagged, drafts=[draft(TPTD)]), "order-sign")
    normal = obs("6768-6", 20, 110, "U/L")
    assert "C-SAFE-ANABOLIC-CONTRA" not in cards(record(normal, drafts=[draft(TPTD)]), "order-sign")


def test_pregnancy_sources_and_their_ends():
    hcg = {"resourceType": "Observation", "id": "h", "status": "final", "code": coding(t.LOINC, "2106-3"),
           "effectiveDateTime": ago(40), "valueCodeableConcept": coding(t.SNOMED, "10828004")}
    negative_later = dict(hcg, id="h2", effectiveDateTime=ago(10), valueCodeableConcept=coding(t.SNOMED, "260385009"))
    young = dict(age=34, t_score=False)
    assert facts.current_pregnancy(record(hcg, **young), S)
    assert not facts.current_pregnancy(record(hcg, negative_later, **young), S)
    assert not facts.current_pregnancy(record(hcg, sex="male", **young), S)  # hCG in a man is a tumour marker
    quant = obs("21198-7", 30, 1200, "m[IU]/mL")
    assert facts.current_pregnancy(record(quant, **young), S)
    assert not facts.current_pregnancy(record(obs("21198-7", 30, 3, "m[IU]/mL"), **young), S)
    coded = cond("Z34.90", 100)
    assert facts.current_pregnancy(record(coded, **young), S)
    assert not facts.current_pregnancy(record(coded, cond("Z37.0", 10), **young), S)  # delivered since
    assert not facts.current_pregnancy(record(cond("Z34.90", 320), **young), S)  # coded 10+ months ago: over
    assert not facts.current_pregnancy(record(cond("O03.9", 20), **young), S)  # a loss, not a pregnancy


def test_pregnancy_card_is_critical_for_every_osteoporosis_drug_and_never_offers_patient_declined():
    hcg = {"resourceType": "Observation", "id": "h", "status": "final", "code": coding(t.LOINC, "2106-3"),
           "effectiveDateTime": ago(40), "valueString": "Positive"}
    for concept in (ALN, DMAB, ZOL, TPTD, ROMO, coding(t.RXNORM, "1490065")):
        card = cards(record(hcg, age=36, drafts=[draft(concept)]), "order-select")["C-SAFE-PREGNANCY"]
        assert card["indicator"] == "critical"
        assert "patient-declined" not in {r["code"] for r in card.get("overrideReasons", ())}
        assert card["source"]["url"].startswith("https://dailymed.nlm.nih.gov/dailymed/")


def test_no_calcium_card_for_a_drug_ordered_during_pregnancy():
    """The order being removed is no reason for the supplement card on the same screen."""
    hcg = {"resourceType": "Observation", "id": "h", "status": "final", "code": coding(t.LOINC, "2106-3"),
           "effectiveDateTime": ago(40), "valueString": "Positive"}
    screen = cards(record(hcg, age=36, drafts=[draft(DMAB)]), "order-sign")
    assert "C-SAFE-PREGNANCY" in screen and "C-SUPP-CAVD" not in screen
    assert "C-SUPP-CAVD" in cards(record(age=36, drafts=[draft(DMAB)]), "order-sign")


def test_no_dxa_due_card_during_pregnancy():
    coded = cond("Z34.90", 100)
    on_drug = med(ALN, 300)
    assert "C-MON-DXA-DUE" in cards(record(on_drug, age=36, t_score=False))
    screen = cards(record(on_drug, coded, age=36, t_score=False))
    assert "C-SAFE-PREGNANCY" in screen and "C-MON-DXA-DUE" not in screen


# ---------------------------------------------------------------------------
# 3. Courses, intervals, duplicates
# ---------------------------------------------------------------------------

def test_denosumab_stop_needs_an_explicit_stop():
    completed_only = record(med(DMAB, 190, "completed"), med(DMAB, 373, "completed"))
    assert facts.denosumab_stop_order(completed_only) is None
    reason = record(med(DMAB, 190, "completed", statusReason={"text": "Treatment discontinued"}))
    assert facts.denosumab_stop_order(reason) is not None
    cancelled_then_active = record(med(DMAB, 190, "cancelled"), med(DMAB, 20, "active"))
    assert facts.denosumab_stop_order(cancelled_then_active) is None
    stopped_with_end = record(med(DMAB, 400, "stopped", dispenseRequest={"validityPeriod": {
        "start": ago(400), "end": ago(300)}}), given(DMAB, 150))
    assert facts.denosumab_stop_order(stopped_with_end) is None  # dosed after the order's end: the course went on


@pytest.mark.parametrize("agent,last_days,fires", [
    (DMAB, 137, True), (DMAB, 151, True), (DMAB, 152, False), (DMAB, 167, False),  # 5 months = 152 days
    (ZOL, 91, True), (ZOL, 334, True), (ZOL, 335, False),                          # 11 months = 335 days
    (ROMO, 14, True), (ROMO, 20, True), (ROMO, 21, False),                         # 3 weeks
])
def test_dose_interval_boundaries(agent, last_days, fires):
    rec = record(given(agent, last_days), drafts=[draft(agent)])
    assert ("C-SAFE-DOSE-INTERVAL" in cards(rec, "order-sign")) == fires


def test_dose_interval_uses_the_planned_date_and_ignores_pending_orders():
    planned = draft(DMAB, dosageInstruction=[{"timing": {"event": [(TODAY + dt.timedelta(days=60)).isoformat()]}}])
    assert "C-SAFE-DOSE-INTERVAL" not in cards(record(given(DMAB, 137), drafts=[planned]), "order-sign")
    pending = record(med(DMAB, 60, "active"), drafts=[draft(DMAB)])  # ordered, never given: not a dose
    assert "C-SAFE-DOSE-INTERVAL" not in cards(pending, "order-sign")


def test_predose_labs_count_coded_kidney_failure_and_leave_known_hypocalcemia_to_its_card():
    none = cards(record(drafts=[draft(ZOL)]), "order-sign")["C-SAFE-PREDOSE-LABS"]
    codes = [a["resource"]["code"]["coding"][0]["code"] for s in none["suggestions"] for a in s["actions"]]
    assert codes == ["2160-0", "17861-6", "1751-7"]
    # Dialysis: kidney function is known (coded); the calcium is ordered by C-SAFE-DMAB-CKD's
    # PROLIA24 plan, so no second calcium order here (review: one test once per screen).
    dialysis = cards(record(cond("Z99.2"), drafts=[draft(DMAB)]), "order-sign")
    assert "C-SAFE-PREDOSE-LABS" not in dialysis
    plan = [a["resource"]["code"]["coding"][0]["code"] for s in dialysis["C-SAFE-DMAB-CKD"]["suggestions"]
            for a in s["actions"] if a["type"] == "create"]
    assert "17861-6" in plan
    # Zoledronic acid contraindicated by dialysis: no pre-dose labs for a dose not to be given.
    zol = cards(record(cond("Z99.2"), drafts=[draft(ZOL)]), "order-sign")
    assert zol["C-SAFE-RENAL"]["indicator"] == "critical" and "C-SAFE-PREDOSE-LABS" not in zol
    hypo = cards(record(cond("E83.51"), obs("98979-8", 20, 70), drafts=[draft(DMAB)]), "order-sign")
    assert "C-SAFE-HYPOCA" in hypo and "C-SAFE-PREDOSE-LABS" not in hypo
    recent = record(obs("98979-8", 89, 70), obs("17861-6", 89, 9.4, "mg/dL"), drafts=[draft(ZOL)])
    assert "C-SAFE-PREDOSE-LABS" not in cards(recent, "order-sign")


def test_two_anabolics_named_in_the_summary():
    both_drafted = cards(record(drafts=[draft(TPTD, "d1"), draft(ABL, "d2")]), "order-sign")["C-DUP-ANABOLIC"]
    assert "teriparatide" in both_drafted["summary"] and "abaloparatide" in both_drafted["summary"]
    same_agent = cards(record(med(TPTD, 100), drafts=[draft(TPTD)]), "order-sign")
    assert "C-DUP-ANABOLIC" not in same_agent  # a renewal is not a second agent
    antires = cards(record(med(ALN, 100), drafts=[draft(DMAB)]), "order-sign")["C-DUP-ANTIRES"]
    assert "alendronate" in antires["summary"] and "denosumab" in antires["summary"]


# ---------------------------------------------------------------------------
# 4. On-therapy events
# ---------------------------------------------------------------------------

VERTEBRAL = "M80.08XA"


def test_treatment_failure_boundaries():
    def fires(*resources):
        return "C-TX-FAILURE" in cards(record(*resources))

    assert fires(med(ALN, 800), cond(VERTEBRAL, 400))        # 13 months into the course
    assert not fires(med(ALN, 800), cond(VERTEBRAL, 500))    # 10 months into the course
    assert fires(med(ALN, 500), cond(VERTEBRAL, 400, cid="v1"), cond("M80.051A", 100, cid="h1"))  # two on therapy
    assert not fires(med(ALN, 800), cond(VERTEBRAL, 900))    # before the course
    # renewals of the same drug do not restart the course
    assert fires(med(ALN, 800, "completed", rid="r1"), med(ALN, 435, "completed", rid="r2"), med(ALN, 70, rid="r3"),
                 cond(VERTEBRAL, 30))
    # zoledronic acid 10 months ago still acts; a fracture now is on therapy
    assert fires(given(ZOL, 1100), given(ZOL, 735), given(ZOL, 300), cond(VERTEBRAL, 30))


def test_atypical_femoral_fracture_on_denosumab_refers_first_and_never_simply_stops():
    rec = record(cond("M84.751A", 60), med(DMAB, 400), given(DMAB, 120), drafts=[draft(DMAB)])
    card = cards(rec, "order-sign")["C-AR-COMPLICATION"]
    assert card["suggestions"][0]["isRecommended"] and card["suggestions"][0]["actions"][0]["type"] == "create"
    assert card["suggestions"][-1]["actions"][0]["type"] == "delete" and not card["suggestions"][-1]["isRecommended"]
    assert "never simply stopped" in card["detail"]
    bp = cards(record(cond("M87.180", 60), drafts=[draft(ALN)]), "order-sign")["C-AR-COMPLICATION"]
    assert bp["suggestions"][0]["actions"][0]["type"] == "delete" and bp["suggestions"][0]["isRecommended"]
    assert "406158007" in str(bp["suggestions"])  # oral surgery for the jaw
    # and no start card offers a bisphosphonate or denosumab after one
    started = cards(record(cond("M87.180", 60, status="resolved")))
    assert "C-TX-BP" not in started and "denosumab" not in str(started.get("C-TX-DMAB-ALT", {}).get("suggestions"))


def test_estrogen_and_bazedoxifene_are_bone_active_vaginal_estrogen_is_not():
    assert "C-TX-BP" not in cards(record(med({"text": "estradiol 0.05 mg/day transdermal patch"}, 300)))
    assert "C-TX-BP" not in cards(record(med({"text": "Duavee (conjugated estrogens/bazedoxifene)"}, 300)))
    assert "C-TX-BP" in cards(record(med({"text": "Vagifem (estradiol vaginal inserts) 10 mcg"}, 300)))


# ---------------------------------------------------------------------------
# 5. Very high risk, glucocorticoids, screening
# ---------------------------------------------------------------------------

def test_positive_fall_screen_alone_is_not_very_high_risk_an_injurious_fall_is():
    screen = {"resourceType": "Observation", "id": "fr", "status": "final", "code": coding(t.LOINC, "73830-2"),
              "effectiveDateTime": ago(30), "valueBoolean": True}
    assert "C-TX-ANABOLIC" not in cards(record(screen))
    fall = cond("W19.XXXA", 700, cid="fall")
    wrist = cond("S52.531A", 702, cid="wrist")
    assert "C-TX-ANABOLIC" in cards(record(fall, wrist))
    far_apart = cond("S52.531A", 450, cid="wrist")  # a fall and a fracture months apart: not an injurious fall
    assert "C-TX-ANABOLIC" not in cards(record(fall, far_apart))
    assert "C-TX-ANABOLIC" not in cards(record(fall, wrist), settings=dataclasses.replace(S, vhr_include_falls=False))


@pytest.mark.parametrize("dosage,concept,expected", [
    ([{"doseAndRate": [{"doseQuantity": {"value": 10, "unit": "mg"}}],
       "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}], {"text": "prednisone"}, 10.0),
    ([{"doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}],
       "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}}], {"text": "prednisone 5 MG Oral Tablet"}, 10.0),
    ([{"text": "2.5 mg twice daily"}], {"text": "prednisolone"}, 5.0),
    ([{"text": "4 mg every morning"}], {"text": "methylprednisolone 4 mg tablet"}, 5.0),
    ([{"text": "0.75 mg daily"}], {"text": "dexamethasone"}, 5.0),
    ([{"text": "20 mg every other day"}], {"text": "prednisone"}, 10.0),
    ([{"text": "as directed"}], {"text": "prednisone 5 mg"}, None),
])
def test_glucocorticoid_dose_reading(dosage, concept, expected):
    assert glucocorticoid_daily_mg({"dosageInstruction": dosage}, concept) == expected


def _pred(mg, days, rid="pred"):
    return med({"text": "prednisone"}, days, rid=rid, dosageInstruction=[{"text": f"{mg} mg daily"}])


@pytest.mark.parametrize("mg,days,age,sex,expected", [
    (10, 395, 60, "male", "warning"),   # the review's man on prednisone for 13 months
    (5, 200, 58, "female", "info"),
    (2.5, 100, 45, "female", "info"),   # the threshold itself
    (2, 395, 62, "male", None),         # below 2.5 mg/day
    (10, 60, 62, "male", None),         # under 3 months
    (10, 395, 38, "male", None),        # under 40
])
def test_giop_population(mg, days, age, sex, expected):
    got = cards(record(_pred(mg, days), sex=sex, age=age, t_score=False)).get("C-GIOP")
    assert (got and got["indicator"]) == (expected or None)


def test_giop_unreadable_dose_is_not_a_low_dose_and_screening_steps_aside():
    rec = record(med({"text": "prednisone"}, 200), sex="female", age=58, t_score=False)
    got = cards(rec)
    assert got["C-GIOP"]["indicator"] == "info" and "not readable" in got["C-GIOP"]["detail"]
    assert "C-SCREEN-DXA" not in got


def test_giop_offers_alendronate_only_at_moderate_risk_when_no_other_card_starts_a_drug():
    frax = obs("90265-0", 60, 15, "%")
    dxa = obs("38263-0", 60, -1.9)
    keys = [s["label"] for s in cards(record(_pred(10, 200), frax, dxa, t_score=False))["C-GIOP"]["suggestions"]]
    assert any("alendronate" in k for k in keys)  # FRAX 15% x 1.15 (dose > 7.5) = 17%: moderate
    high = cards(record(_pred(10, 200)))  # T -2.8: osteoporosis, C-TX-BP owns the drug
    assert "C-TX-BP" in high and not any("alendronate" in s["label"] for s in high["C-GIOP"].get("suggestions", ()))


def test_giop_treatment_order_agrees_with_the_treatment_cards():
    """Clinical review: at high risk C-GIOP said "an anabolic agent first or an antiresorptive"
    beside C-TX-BP's alendronate; and with a DXA on file but no FRAX it said "low risk, decide
    once the DXA and FRAX are known"."""
    high = cards(record(_pred(10, 200)))  # T -2.8, no fracture: high, not very high
    assert "C-TX-BP" in high
    assert "**Risk is high: treat**: an oral bisphosphonate first" in high["C-GIOP"]["detail"]
    hip = cond("M80.051A", days=100)  # a recent hip fracture: very high
    very = cards(record(_pred(10, 200), hip))
    assert "C-TX-ANABOLIC" in very and "risk very high" in very["C-GIOP"]["summary"]
    assert "**Risk is very high: treat**: an anabolic agent first" in very["C-GIOP"]["detail"]
    no_frax = cards(record(_pred(10, 200), obs("38263-0", 60, -1.9), sex="male", age=45, t_score=False))["C-GIOP"]
    assert "not yet assessed" in no_frax["detail"] and "the DXA is on file" in no_frax["detail"]
    assert no_frax["summary"].endswith("risk not yet assessed")


# ---------------------------------------------------------------------------
# 6. Massage and manual therapy
# ---------------------------------------------------------------------------

def sr(concept, sid="sr1", **extra):
    return {"resourceType": "ServiceRequest", "id": sid, "status": "draft", "intent": "order", "code": concept, **extra}


@pytest.mark.parametrize("code", ["97140", "98940", "98941", "98942", "98925", "98929"])
def test_spinal_manipulation_or_mobilisation_with_osteoporosis_is_critical(code):
    card = cards(record(drafts=[sr(coding(t.CPT, code))]), "order-sign")["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "critical"
    assert card["suggestions"][0]["actions"][0]["type"] == "delete" and card["suggestions"][0]["isRecommended"]


def test_manual_therapy_away_from_fragile_regions_or_referral_by_name():
    knee = sr(coding(t.CPT, "97140"), bodySite=[{"text": "left knee"}])
    assert cards(record(drafts=[knee]), "order-sign")["C-MASSAGE-SAFETY"]["indicator"] == "warning"
    chiro = sr(coding(t.SNOMED, "308449000"))  # referral to a chiropractor
    assert cards(record(drafts=[chiro]), "order-sign")["C-MASSAGE-SAFETY"]["indicator"] == "critical"
    osteopenia = record(obs("38267-1", 200, -1.8, oid="op"), drafts=[sr(coding(t.CPT, "98940"))], t_score=False)
    assert cards(osteopenia, "order-sign")["C-MASSAGE-SAFETY"]["indicator"] == "warning"


@pytest.mark.parametrize("resource,words", [
    (cond("L03.115", 10), "skin or soft-tissue infection"),
    (cond("S81.812A", 10), "open wound"),
    (cond("C79.51", 100), "bone metastases"),
])
def test_sites_not_to_treat_are_warnings_even_without_osteoporosis(resource, words):
    card = cards(record(resource, drafts=[sr(coding(t.CPT, "97124"))], t_score=False), "order-sign")["C-MASSAGE-SAFETY"]
    assert card["indicator"] == "warning" and words in card["detail"].lower()


def test_recent_surgery_window_and_update_with_patient_instruction():
    def surgery(days):
        return {"resourceType": "Procedure", "id": f"p{days}", "status": "completed", "performedDateTime": ago(days),
                "code": {"text": "Laparoscopic cholecystectomy"}}
    massage = sr(coding(t.CPT, "97124"), patientInstruction="Bring loose clothing.")
    card = cards(record(surgery(84), drafts=[massage], t_score=False), "order-sign")["C-MASSAGE-SAFETY"]
    update = card["suggestions"][0]["actions"][0]["resource"]
    assert update["patientInstruction"].startswith("Bring loose clothing. Report any new pain")
    assert "C-MASSAGE-SAFETY" not in cards(record(surgery(85), drafts=[massage], t_score=False), "order-sign")
    longer = dataclasses.replace(S, recent_surgery_weeks=13)
    assert "C-MASSAGE-SAFETY" in cards(record(surgery(85), drafts=[massage], t_score=False, settings=longer),
                                       "order-sign", settings=longer)


def test_kyphosis_or_vertebral_fracture_adds_positioning():
    card = cards(record(cond("M40.209"), drafts=[sr(coding(t.CPT, "97124"))]), "order-sign")["C-MASSAGE-SAFETY"]
    assert "no unsupported prone lying" in card["detail"]


# ---------------------------------------------------------------------------
# 8-9. Rehabilitation and corrections
# ---------------------------------------------------------------------------

def test_short_fes_i_and_dietitian_thresholds():
    short = {"resourceType": "Observation", "id": "sf", "status": "final", "effectiveDateTime": ago(20),
             "code": {"text": "Short FES-I total"}, "valueInteger": 11}
    card = cards(record(short, obs("39156-5", 20, 19.9, "kg/m2")))["C-EXERCISE"]
    assert "**Fear of falling** on record" in card["detail"] and "dietitian" in str(card["suggestions"])
    low_concern = dict(short, valueInteger=10)
    card = cards(record(low_concern, obs("39156-5", 20, 20, "kg/m2")))["C-EXERCISE"]
    assert "**Fear of falling** on record" not in card["detail"] and "dietitian" not in str(card.get("suggestions"))


def test_label_links_and_override_reasons():
    assert t.label_url("denosumab").endswith("setid=49e5afe9-a0c7-40c4-af9f-f287a80c5c88")
    assert t.label_url("abaloparatide") == "https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query=TYMLOS"
    for card_id, code in (("C-SUPP-CAVD", "dietary-intake-adequate"), ("C-EXERCISE", "in-exercise-programme"),
                          ("C-FALLS", "done-elsewhere"), ("C-DMAB-STOP", "denosumab-continuing"),
                          ("C-SCREEN-DXA", "limited-life-expectancy"), ("C-SAFE-RENAL", "kidney-function-acceptable")):
        assert code in card_render.load_card(card_id)["overrideReasons"], card_id
    assert card_render.load_card("C-EXERCISE")["source"]["url"] == "https://doi.org/10.1007/s00198-013-2523-2"
    assert "2025" in card_render.load_card("C-SCREEN-DXA")["source"]["label"]
    assert "in progress" not in card_render.load_card("C-SCREEN-DXA")["detail"]


def test_bonsity_is_teriparatide():
    assert t.classify_medication(coding(t.RXNORM, "2716408")).agents == ("teriparatide",)
    assert t.classify_medication({"text": "Bonsity 620 mcg/2.48 mL pen"}).agents == ("teriparatide",)
