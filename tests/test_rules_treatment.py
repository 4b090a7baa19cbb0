"""Treatment rules called directly with a record: C-TX-DMAB-ALT, C-TX-ANABOLIC,
C-HOLIDAY, C-SECONDARY-EVAL and how they share out patients with C-TX-BP.
(The boundary fixtures in fhir_fixtures/ go through HTTP in test_fixture_scenarios.)"""

import datetime as dt

import pytest

from cds_service.card_render import load_card
from cds_service import card_render, engine
from cds_service.fhir import terminology as t
from cds_service.record import build_record
from cds_service.rules import treatment as tx
from cds_service.rules.base import resolve_cross_refs
from cds_service.rules.on_therapy import treatment_failure
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import TODAY, coding

S = ClinicalSettings()
DRUG_RULES = (tx.start_bisphosphonate, tx.start_denosumab_alternative, tx.start_anabolic)


def bmd(site_code, value, when="2025-02-01", oid=None):
    return {"resourceType": "Observation", "id": oid or f"b{site_code}{value}{when}", "status": "final",
            "code": coding(t.LOINC, site_code), "effectiveDateTime": when, "valueQuantity": {"value": value}}


def lab(code, value, unit, when="2025-03-10"):
    return {"resourceType": "Observation", "id": f"l{code}{when}", "status": "final", "code": coding(t.LOINC, code),
            "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": unit}}


def egfr(value, when="2025-03-10"):
    return lab("98979-8", value, "mL/min/{1.73_m2}", when)


def cond(code, onset, system=t.ICD10CM, cid=None, text=None):
    concept = coding(system, code) if code else {"text": text}
    return {"resourceType": "Condition", "id": cid or f"c{code}{onset}", "code": concept, "onsetDateTime": onset}


def med(concept, start, status="active", end=None, mid=None, reason=None):
    r = {"resourceType": "MedicationRequest", "id": mid or f"m{start}{status}", "status": status,
         "authoredOn": start, "medicationCodeableConcept": concept}
    if end:
        r["dispenseRequest"] = {"validityPeriod": {"start": start, "end": end}}
    if reason:
        r["statusReason"] = {"text": reason}
    return r


def admin(concept, when):
    return {"resourceType": "MedicationAdministration", "id": f"a{when}", "status": "completed",
            "effectiveDateTime": when, "medicationCodeableConcept": concept}


# Calcium and 25-OH vitamin D on file: the baseline labs a parenteral start waits for.
CA_D = (lab("17861-6", 9.4, "mg/dL"), lab("62292-8", 32, "ng/mL"))
ALENDRONATE = coding(t.RXNORM, "904431")
RISEDRONATE = coding(t.RXNORM, "905024")
ZOLEDRONATE = coding(t.RXNORM, "705824")
PROLIA = coding(t.RXNORM, "993452")
FORTEO = coding(t.RXNORM, "1435115")


def patient(*obs, conditions=(), meds=(), admins=(), sex="female", birth="1952-01-01"):
    def bundle(items):
        return {"resourceType": "Bundle", "entry": [{"resource": r} for r in items]}
    return build_record({"patient": {"resourceType": "Patient", "id": "p", "gender": sex, "birthDate": birth},
                         "observations": bundle(obs), "conditions": bundle(conditions),
                         "medicationRequests": bundle(meds), "medicationAdministrations": bundle(admins)},
                        today=TODAY)


def fired(record):
    """Card ids of the treatment rules that fire, rule by rule (no engine selection)."""
    out = []
    for fn in (*DRUG_RULES, tx.consider_drug_holiday, tx.secondary_evaluation):
        out += [f.card_id for f in fn(record, TODAY, S)]
    return out


def one(fn, record):
    findings = fn(record, TODAY, S)
    assert len(findings) == 1, findings
    return findings[0]


def render(finding):
    return card_render.render(finding, patient_id="p", today=TODAY, strict=True)


# --- drug-start rules share out patients by themselves --------------------------

@pytest.mark.parametrize("t_score,expected", [(-2.4, []), (-2.5, ["C-TX-BP"]), (-3.0, ["C-TX-BP"]),
                                              (-3.1, ["C-TX-ANABOLIC"])])
def test_t_score_boundaries_pick_exactly_one_drug_rule(t_score, expected):
    record = patient(bmd("38267-1", t_score), egfr(70))
    assert [c for c in fired(record) if c.startswith("C-TX")] == expected


@pytest.mark.parametrize("value,expected,offered", [
    (29, "C-TX-DMAB-ALT", None), (30, "C-TX-BP", ("risedronate-first",)), (34, "C-TX-BP", ("risedronate-first",)),
    (35, "C-TX-BP", ("alendronate", "risedronate")), (None, "C-TX-BP", ("alendronate", "risedronate"))])
def test_egfr_boundary_and_unknown_egfr(value, expected, offered):
    """Below 30 no oral bisphosphonate is within its label; 30-34 risedronate still is
    (Actonel), alendronate is not (Fosamax, below 35); review of the second pass."""
    obs = [bmd("38267-1", -2.7)] + ([egfr(value)] if value is not None else [])
    assert [c for c in fired(patient(*obs)) if c.startswith("C-TX")] == [expected]
    if expected == "C-TX-BP":
        finding = one(tx.start_bisphosphonate, patient(*obs))
        assert finding.suggestions == offered
        # The card's kidney wording follows the reading: "below 35" only between 30 and 35.
        below_35 = "kidney function below 35, still within risedronate's label"
        assert (below_35 in finding.variables["oral_bp_status"]) == (offered == ("risedronate-first",))
        assert (below_35 in render(finding)["detail"]) == (offered == ("risedronate-first",))


def test_stale_egfr_is_unknown_not_low():
    # eGFR 28 measured 14 months ago: too old to count, so no contraindication (and TX-1a asks for labs)
    finding = one(tx.start_bisphosphonate, patient(bmd("38267-1", -2.7), egfr(28, "2024-04-01")))
    assert "eGFR" in finding.variables["labs_note"]


# --- C-TX-DMAB-ALT ----------------------------------------------------------------

def test_dmab_alt_renal_offers_denosumab_only_with_calcium_check():
    # Between 30 and 35 only an oral-route problem sends a patient here (the kidney function then
    # rules zoledronic acid out); below 30 the PROLIA24 work-up comes first (next test).
    stricture = cond("K22.2", "2023-01-01")
    finding = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), *CA_D, egfr(34), conditions=[stricture]))
    assert finding.suggestions == ("denosumab",)
    assert finding.variables["zoledronate_note"] == "Zoledronic acid: contraindicated below 35 (Reclast label)."
    card = render(finding)
    assert card["indicator"] == "info" and card["selectionBehavior"] == "at-most-one"
    assert "contraindicated" in card["detail"] and "Patient data used" in card["detail"]
    dmab, calcium = (a["resource"] for a in card["suggestions"][0]["actions"])
    assert dmab["medicationCodeableConcept"]["coding"][0]["code"] == "993452"
    dosage = dmab["dosageInstruction"][0]
    assert dosage["timing"]["repeat"] == {"frequency": 1, "period": 6, "periodUnit": "mo"}
    assert dosage["route"]["coding"][0]["code"] == "34206005"
    assert calcium["resourceType"] == "ServiceRequest" and calcium["code"]["coding"][0]["code"] == "17861-6"
    assert {r["code"] for r in card["overrideReasons"]} >= {"patient-declined", "managed-by-specialist"}


def test_dmab_alt_gi_problem_adds_zoledronate_only_with_known_egfr_35_or_more():
    stricture = cond("K22.2", "2023-01-01")
    both = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), *CA_D, egfr(35), conditions=[stricture]))
    assert both.suggestions == ("denosumab", "zoledronic-acid")
    zol = render(both)["suggestions"][1]["actions"][0]["resource"]
    assert zol["medicationCodeableConcept"]["coding"][0]["code"] == "705824"
    assert zol["dosageInstruction"][0]["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "a"}
    # eGFR unknown: zoledronic acid waits for a value (the card says so)
    unknown = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), *CA_D, conditions=[stricture]))
    assert "not offered until it is known" in unknown.variables["zoledronate_note"]
    assert unknown.suggestions == ()  # and no injection before the baseline labs (kidney function unknown)
    # GI problem and eGFR 34: the GI problem sends the patient here, the kidney rules zoledronic acid out
    renal = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), *CA_D, egfr(34), conditions=[stricture]))
    assert renal.suggestions == ("denosumab",)


def test_dmab_alt_intolerance_kinds():
    gi_stop = med(ALENDRONATE, "2023-01-01", status="stopped", end="2023-04-01", reason="Severe heartburn")
    gi = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), *CA_D, egfr(60), meds=[gi_stop]))
    assert gi.suggestions == ("denosumab", "zoledronic-acid")
    assert any("upper-GI intolerance" in f for f in gi.facts)
    allergy_stop = med(ALENDRONATE, "2023-01-01", status="stopped", end="2023-04-01", reason="allergic reaction")
    assert one(tx.start_denosumab_alternative,
               patient(bmd("38267-1", -2.7), *CA_D, egfr(60), meds=[allergy_stop])).suggestions == ("denosumab",)
    coded = cond(None, "2022-01-01", text="Bisphosphonate intolerance", cid="bpi")
    assert one(tx.start_denosumab_alternative,
               patient(bmd("38267-1", -2.7), *CA_D, egfr(60), conditions=[coded])).suggestions == ("denosumab",)
    # a stop for another reason (cost) is no intolerance: C-TX-BP as usual
    other = med(ALENDRONATE, "2023-01-01", status="stopped", end="2023-04-01", reason="cost")
    assert [c for c in fired(patient(bmd("38267-1", -2.7), *CA_D, egfr(60), meds=[other])) if c.startswith("C-TX")] == ["C-TX-BP"]


def test_dmab_alt_advanced_ckd_note_and_prolia24_work_up_instead_of_an_order():
    finding = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), *CA_D, egfr(25)))
    assert "severe hypocalcemia" in finding.variables["ckd_note"] and "CKD-mineral bone disorder" in finding.variables["ckd_note"]
    assert "1,25-(OH)2 vitamin D" in load_card("C-TX-DMAB-ALT")["guidance"]  # the full plan, one click away
    assert finding.suggestions == ()  # no one-click denosumab below 30 (PROLIA24)
    (plan,) = finding.extra_suggestions
    codes = {a.resource["code"]["coding"][0]["code"] for a in plan.actions}
    assert codes == {"2731-8", "1649-3", "306286007"}  # calcium, 25-OH D within 90 days: not again (review 14)
    assert one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), *CA_D, egfr(29))).variables["ckd_note"]
    assert tx.start_denosumab_alternative(patient(bmd("38267-1", -2.7), *CA_D, egfr(30)), TODAY, S) == []  # risedronate


def test_dmab_alt_waits_for_baseline_labs_and_orders_no_test_twice():
    """Review: calcium or vitamin D unknown -> no one-click injection (Prolia / Reclast:
    correct hypocalcemia and vitamin D first); C-LAB-BASELINE orders the labs, and the
    PROLIA24 work-up leaves out what that card orders (no test twice on one screen)."""
    plain = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), egfr(34),
                                                        conditions=[cond("K22.2", "2023-01-01")]))
    assert plain.suggestions == () and not plain.extra_suggestions
    # The fact names the baseline-labs card when it is on the screen, else the labs to order.
    beside = [resolve_cross_refs(f, {"C-LAB-BASELINE"}) for f in plain.facts]
    alone = [resolve_cross_refs(f, ()) for f in plain.facts]
    assert "No injection ordered yet: baseline labs first (see the baseline-labs card)" in beside
    assert "No injection ordered yet: order the baseline labs first (serum calcium, 25-OH vitamin D)" in alone
    ckd = one(tx.start_denosumab_alternative, patient(bmd("38267-1", -2.7), egfr(25)))
    (plan,) = ckd.extra_suggestions
    assert {a.resource["code"]["coding"][0]["code"] for a in plan.actions} == {"1649-3", "306286007"}


# --- C-TX-ANABOLIC ----------------------------------------------------------------

def test_anabolic_women_get_three_options_men_never_romosozumab():
    woman = one(tx.start_anabolic, patient(bmd("38267-1", -3.4), egfr(70)))
    assert woman.suggestions == ("teriparatide", "abaloparatide", "romosozumab")
    card = render(woman)
    assert card["indicator"] == "warning"
    romo = card["suggestions"][2]["actions"][0]["resource"]["medicationCodeableConcept"]
    assert romo == {"text": "romosozumab 105 MG/1.17 ML prefilled syringe"}  # no unverified code
    assert card["suggestions"][0]["actions"][0]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "1435115"
    assert "denosumab" in card["detail"] and "bisphosphonate" in card["detail"]  # alternatives in text

    man = one(tx.start_anabolic, patient(bmd("38267-1", -3.4), egfr(70), sex="male", birth="1950-01-01"))
    assert man.suggestions == ("teriparatide", "abaloparatide")
    assert "Romosozumab not suggested: approved only for postmenopausal women" in man.facts


@pytest.mark.parametrize("onset,romo", [("2024-12-01", False), ("2024-05-15", True)])
def test_romosozumab_excluded_within_12_months_of_mi(onset, romo):
    finding = one(tx.start_anabolic, patient(bmd("38267-1", -3.4), conditions=[cond("I21.9", onset)]))
    assert ("romosozumab" in finding.suggestions) is romo
    assert any("Myocardial infarction" in f for f in finding.facts) is not romo


def test_pth_analog_contraindication_or_used_course_leaves_romosozumab():
    paget = one(tx.start_anabolic, patient(bmd("38267-1", -3.4), conditions=[cond("M88.9", "2020-01-01")]))
    assert paget.suggestions == ("romosozumab",)
    used = med(FORTEO, "2021-01-01", status="completed", end="2023-01-15")
    # The course was followed by an antiresorptive (a year of alendronate), as ACP 2023 Rec 3 asks;
    # without one, the follow-on comes first (test_no_new_anabolic_before_the_follow_on_antiresorptive).
    follow_on = med(ALENDRONATE, "2023-02-01", status="completed", end="2024-02-01", mid="m-aln-follow-on")
    after_pth = one(tx.start_anabolic, patient(bmd("38267-1", -3.4), meds=[used, follow_on]))
    assert after_pth.suggestions == ("romosozumab",) and any("lifetime limit" in f for f in after_pth.facts)


def test_no_new_anabolic_before_the_follow_on_antiresorptive():
    """Screen review: teriparatide stopped 2 months ago (C-ANABOLIC-FOLLOW-ON
    still quiet) must not meet a C-TX-ANABOLIC recommending teriparatide
    again; the antiresorptive start card carries the follow-on instead."""
    stopped = med(FORTEO, "2024-01-01", status="stopped", end=(TODAY - dt.timedelta(days=60)).isoformat())
    record = patient(bmd("38267-1", -3.4), egfr(70), meds=[stopped])
    assert tx.start_anabolic(record, TODAY, S) == []
    codes = [c["source"]["topic"]["code"] for c in engine.evaluate("patient-view", record, TODAY, S, strict=True)]
    assert "C-TX-BP" in codes and "C-TX-ANABOLIC" not in codes and "C-ANABOLIC-FOLLOW-ON" not in codes
    finding = one(tx.start_bisphosphonate, record)
    assert any("follow it with an antiresorptive" in f for f in finding.facts)
    # 4 months later the course card fires and the drug-start card is silenced (engine.COURSE_CARDS)
    stopped = med(FORTEO, "2024-01-01", status="stopped", end=(TODAY - dt.timedelta(days=120)).isoformat())
    codes = [c["source"]["topic"]["code"] for c in engine.evaluate(
        "patient-view", patient(bmd("38267-1", -3.4), egfr(70), meds=[stopped]), TODAY, S, strict=True)]
    assert "C-ANABOLIC-FOLLOW-ON" in codes and not {"C-TX-BP", "C-TX-ANABOLIC", "C-TX-DMAB-ALT"} & set(codes)


def test_vhr_without_any_anabolic_option_falls_back_to_antiresorptive():
    # a man (no romosozumab) with hyperparathyroidism (no PTH analog): very high risk, BP card instead
    record = patient(bmd("38267-1", -3.4), egfr(70), conditions=[cond("E21.0", "2022-01-01")],
                     sex="male", birth="1950-01-01")
    assert tx.start_anabolic(record, TODAY, S) == []
    finding = one(tx.start_bisphosphonate, record)
    assert finding.variables["risk_text"].startswith("very high fracture risk")
    assert any("Teriparatide/abaloparatide not suggested" in f for f in finding.facts)
    # and with eGFR 29 the denosumab card takes it
    record = patient(bmd("38267-1", -3.4), egfr(29), conditions=[cond("E21.0", "2022-01-01")],
                     sex="male", birth="1950-01-01")
    assert [c for c in fired(record) if c.startswith("C-TX")] == ["C-TX-DMAB-ALT"]


def test_no_drug_start_card_when_on_therapy_or_in_holiday():
    assert tx.start_anabolic(patient(bmd("38267-1", -3.4), meds=[med(FORTEO, "2025-01-01")]), TODAY, S) == []
    holiday = med(ALENDRONATE, "2017-01-01", status="completed", end="2022-06-01")
    assert fired(patient(bmd("38267-1", -3.4), meds=[holiday])) == []


# --- C-HOLIDAY --------------------------------------------------------------------

def hips(fn=-2.0, th=-1.7, when="2025-03-01"):
    return [bmd("38263-0", fn, when), bmd("38264-8", th, when)]


@pytest.mark.parametrize("start,fires", [("2020-06-01", True), ("2020-06-02", False), ("2020-07-01", False)])
def test_holiday_five_year_boundary(start, fires):
    record = patient(*hips(), meds=[med(ALENDRONATE, start)])
    assert bool(tx.consider_drug_holiday(record, TODAY, S)) is fires


def test_five_years_counted_in_days_across_a_leap_year():
    # 2021-03-01 .. 2026-03-01 is 1826 days (one 29 February): five calendar years
    today = dt.date(2026, 3, 1)
    record = build_record({"patient": {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1950-01-01"},
                           "observations": {"resourceType": "Bundle", "entry": [{"resource": r} for r in hips()]},
                           "medicationRequests": med(ALENDRONATE, "2021-03-01")}, today=today)
    assert tx.oral_bp_days(record) == 1826
    assert tx.consider_drug_holiday(record, today, S)


def test_holiday_counts_switches_between_oral_bisphosphonates():
    meds = [med(ALENDRONATE, "2020-05-01", status="completed", end="2023-05-01", mid="a"),
            med(RISEDRONATE, "2023-05-01", mid="r")]
    finding = one(tx.consider_drug_holiday, patient(*hips(), meds=meds))
    assert "alendronate since 2020-05-01" in finding.facts[0] and "risedronate since 2023-05-01" in finding.facts[0]


@pytest.mark.parametrize("doses,fires", [(3, True), (2, False)])
def test_holiday_zoledronate_doses(doses, fires):
    dates = ["2022-09-01", "2023-09-01", "2024-09-01"][-doses:]
    record = patient(*hips(), admins=[admin(ZOLEDRONATE, d) for d in dates])
    assert bool(tx.consider_drug_holiday(record, TODAY, S)) is fires


@pytest.mark.parametrize("extra,fires", [
    ([], True),
    ([bmd("38264-8", -2.5, "2025-04-01")], False),           # most recent total hip T -2.5
    ([bmd("38264-8", -2.4, "2025-04-01")], True),
    ([bmd("38264-8", -2.7, "2020-01-01")], True),            # an older -2.7 does not count
    ([bmd("38267-1", -3.1, "2025-03-01")], False),           # LS -3.1 at the same DXA: very high risk
    ([bmd("38267-1", -2.8, "2025-03-01")], True),            # LS is not a holiday criterion itself
])
def test_holiday_bmd_conditions(extra, fires):
    record = patient(*hips(), *extra, meds=[med(ALENDRONATE, "2019-01-01")])
    assert bool(tx.consider_drug_holiday(record, TODAY, S)) is fires


def test_holiday_needs_known_hip_t_scores():
    assert tx.consider_drug_holiday(patient(bmd("38267-1", -2.0), meds=[med(ALENDRONATE, "2019-01-01")]), TODAY, S) == []


@pytest.mark.parametrize("fracture,fires", [
    (cond("S52.531A", "2015-03-01"), True),    # wrist fracture before therapy
    (cond("S52.531A", "2021-03-01"), False),   # any fracture on therapy
    (cond("S72.001A", "2012-03-01"), False),   # hip fracture before therapy
    (cond("M80.08XA", "2010-03-01"), False),   # spine fragility fracture before therapy
])
def test_holiday_fracture_conditions(fracture, fires):
    record = patient(*hips(), conditions=[fracture], meds=[med(ALENDRONATE, "2019-01-01")])
    assert bool(tx.consider_drug_holiday(record, TODAY, S)) is fires


@pytest.mark.parametrize("start,fires", [("2015-06-01", True), ("2015-06-03", False)])  # 10 years on TODAY
def test_a_course_beyond_ten_years_asks_for_a_duration_review_without_hip_t_scores(start, fires):
    """Issue 14: 23 years of alendronate drew nothing because no hip T-score was on file."""
    record = patient(bmd("38267-1", -2.6), meds=[med(ALENDRONATE, start)])
    findings = tx.consider_drug_holiday(record, TODAY, S)
    assert bool(findings) is fires
    if fires:
        text = render(findings[0])
        assert "review how long to go on" in text["summary"] and "No femoral neck or total hip T-score" in text["detail"]
        assert "Decide with the patient: a drug holiday" in text["detail"]


def test_a_very_long_course_at_very_high_risk_is_reviewed_but_no_holiday_is_offered():
    record = patient(bmd("38267-1", -3.6), meds=[med(ALENDRONATE, "2002-05-01")])  # below -3.0: very high
    text = render(one(tx.consider_drug_holiday, record))
    assert "23 years" in text["summary"] and "so no holiday" in text["detail"]


def test_a_very_long_course_with_a_fracture_on_therapy_is_left_to_the_treatment_failure_card():
    """Clinical review (a Synthea man, 29 years of alendronate, fractures on it): C-HOLIDAY gave
    C-TX-FAILURE's switch advice again. The failure card speaks, with the course's length."""

    record = patient(bmd("38267-1", -2.6), conditions=[cond("S52.531A", "2024-03-01")],
                     meds=[med(ALENDRONATE, "2002-05-01")])
    assert tx.consider_drug_holiday(record, TODAY, S) == []
    (failure,) = treatment_failure(record, TODAY, S)
    assert any(f.startswith("Oral bisphosphonate for 23.") and "beyond 10 years" in f for f in failure.facts)


def test_never_a_holiday_on_denosumab():
    old_bp = med(ALENDRONATE, "2012-01-01", status="completed", end="2018-01-01")
    record = patient(*hips(), meds=[old_bp], admins=[admin(PROLIA, "2025-02-01")])
    assert tx.consider_drug_holiday(record, TODAY, S) == []


# --- C-SECONDARY-EVAL -------------------------------------------------------------

@pytest.mark.parametrize("z,fires", [(-2.0, True), (-1.9, False)])
def test_secondary_eval_man_under_50_z_boundary_and_no_drug_card(z, fires):
    record = patient(bmd("85394-5", z), bmd("38267-1", -3.2), sex="male", birth="1976-01-01")
    assert fired(record) == (["C-SECONDARY-EVAL"] if fires else [])


BASELINE_LABS = (egfr(70), lab("17861-6", 9.4, "mg/dL"), lab("62292-8", 32, "ng/mL"))


def test_secondary_eval_groups_and_panels():
    # Baseline labs on file (no C-LAB-BASELINE): the full panel, basic labs included, less the
    # tests on record in the last 12 months (eGFR, calcium, 25-OH vitamin D).
    man = one(tx.secondary_evaluation, patient(bmd("38263-0", -2.6), *BASELINE_LABS, sex="male", birth="1955-01-01"))
    assert man.suggestions == ("panel-male",) and "man with osteoporosis" in man.variables["reason"]
    assert set(man.left_out) == {"calcium", "vitamin-d", "creatinine"}
    card = render(man)
    codes = [a["resource"]["code"].get("coding", [{}])[0].get("code") for a in card["suggestions"][0]["actions"]]
    assert {"2731-8", "1751-7", "2777-1", "6768-6"} <= set(codes)
    assert not {"17861-6", "62292-8", "98979-8"} & set(codes)
    assert any(a["resource"]["code"].get("text") == "Morning total testosterone"
               and a["resource"]["code"]["coding"][0]["code"] == "2986-8" for a in card["suggestions"][0]["actions"])
    assert all(a["resource"]["resourceType"] == "ServiceRequest" for a in card["suggestions"][0]["actions"])

    young_fracture = patient(conditions=[cond("M80.031A", "2024-10-01")], birth="1988-01-01")
    finding = one(tx.secondary_evaluation, young_fracture)
    assert finding.suggestions == ("panel-female",) and "premenopausal woman with a fragility fracture" in finding.variables["reason"]
    assert [c for c in fired(young_fracture) if c.startswith("C-TX")] == []
    unknown_status = one(tx.secondary_evaluation, patient(bmd("85394-5", -2.2), birth="1978-01-01"))
    assert "45-49" in unknown_status.variables["reason"]

    # not: postmenopausal woman with osteoporosis; man >= 50 with osteopenia only
    assert tx.secondary_evaluation(patient(bmd("38267-1", -2.7)), TODAY, S) == []
    assert tx.secondary_evaluation(patient(bmd("38267-1", -2.2), sex="male", birth="1955-01-01"), TODAY, S) == []


def test_secondary_panel_leaves_the_basic_labs_to_the_baseline_card():
    """Screen review: a man with osteoporosis and no labs sees C-TX-BP,
    C-LAB-BASELINE and C-SECONDARY-EVAL; each test is suggested once."""
    record = patient(bmd("38263-0", -2.6), sex="male", birth="1955-01-01")
    finding = one(tx.secondary_evaluation, record)
    assert finding.suggestions == ("panel-male-extra",)
    assert "baseline-labs card" in finding.variables["panel_note"]
    assert finding.variables["subject"] == "Man with osteoporosis"
    cards = {c["source"]["topic"]["code"]: c for c in engine.evaluate("patient-view", record, TODAY, S, strict=True)}
    assert {"C-TX-BP", "C-LAB-BASELINE", "C-SECONDARY-EVAL"} <= set(cards)
    assert cards["C-SECONDARY-EVAL"]["summary"].startswith("Man with osteoporosis: evaluate for secondary causes")

    def ordered(card):
        return [(a["resource"]["code"].get("coding") or [{"code": a["resource"]["code"]["text"]}])[0]["code"]
                for s in card.get("suggestions", ()) for a in s["actions"] if a["type"] == "create"]
    panel, baseline = ordered(cards["C-SECONDARY-EVAL"]), ordered(cards["C-LAB-BASELINE"])
    assert {"98979-8", "17861-6", "62292-8", "1751-7", "2777-1", "6768-6", "2731-8"} <= set(baseline)
    assert not set(panel) & set(baseline)
    assert "2986-8" in panel and "3016-3" in panel  # testosterone and TSH

    # Same patient with the baseline labs on file: the full panel, now with LOINC for phosphate and
    # ALP (eGFR, calcium and 25-OH vitamin D are on record: left out).
    full = render(one(tx.secondary_evaluation, patient(bmd("38263-0", -2.6), *BASELINE_LABS, sex="male",
                                                        birth="1955-01-01")))
    assert {"2777-1", "6768-6"} <= set(ordered(full)) and "98979-8" not in ordered(full)


def test_engine_keeps_one_drug_start_card_and_orders_warning_first():
    record = patient(bmd("38267-1", -3.4), egfr(30), sex="male", birth="1950-01-01")
    codes = [c["source"]["topic"]["code"] for c in engine.evaluate("patient-view", record, TODAY, S, strict=True)]
    assert codes[0] == "C-TX-ANABOLIC" and "C-SECONDARY-EVAL" in codes
    assert len({"C-TX-BP", "C-TX-DMAB-ALT", "C-TX-ANABOLIC"} & set(codes)) == 1
