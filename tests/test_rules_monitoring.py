"""C-VITD-LOW (TX-8), C-SUPP-CAVD review points (TX-7), C-MON-DXA-DUE and
C-MON-ONTX (MON-1, MON-6), C-SCREEN-DXA (MON-3..5), C-LAB-BASELINE (MON-7)."""

import dataclasses
import datetime as dt

import pytest

from cds_service import card_render, engine
from cds_service.fhir import terminology as t
from cds_service.record import build_record
from cds_service.rules import monitoring, on_therapy, supplementation
from cds_service.rules.facts import vitamin_d_repletion_hold
from cds_service.rules.settings import ClinicalSettings
from cds_service.rules.treatment import missing_baseline_labs
from tests.conftest import TODAY, coding

S = ClinicalSettings()


def obs(oid, code, value, unit="", date="2025-03-01"):
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": coding(t.LOINC, code),
            "effectiveDateTime": date, "valueQuantity": {"value": value, "unit": unit}}


def med(mid, concept, start="2024-01-01", status="active"):
    return {"resourceType": "MedicationRequest", "id": mid, "status": status, "authoredOn": start,
            "medicationCodeableConcept": concept}


ALENDRONATE = coding(t.RXNORM, "904431")
VIT_D = coding(t.RXNORM, "245500")
CALCIUM = coding(t.RXNORM, "282465")


def patient(*resources, gender="female", birth="1955-01-01", today=TODAY):
    by_type = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append({"resource": r})
    prefetch = {"patient": {"resourceType": "Patient", "id": "p", "gender": gender, "birthDate": birth}}
    for rtype, entries in by_type.items():
        prefetch[rtype] = {"resourceType": "Bundle", "entry": entries}
    return build_record(prefetch, today=today)


def cards(record, today=TODAY, settings=S):
    return {c["source"]["topic"]["code"]: c for c in engine.evaluate("patient-view", record, today, settings, strict=True)}


OSTEOPOROSIS_T = obs("t", "38267-1", -2.7, "{T-score}", "2025-02-01")


# --- C-VITD-LOW -------------------------------------------------------------

@pytest.mark.parametrize("value,unit,indicator", [
    (19.9, "ng/mL", "warning"), (20, "ng/mL", "info"), (29.9, "ng/mL", "info"), (30, "ng/mL", None),
    (49.6, "nmol/L", "warning"),  # 19.87 ng/mL
    (50, "nmol/L", "info"),       # 20.03 ng/mL: the brief's "< 20 ng/mL (50 nmol/L)" boundary
    (74.8, "nmol/L", "info"),     # 29.97 ng/mL
    (75, "nmol/L", None),         # 30.05 ng/mL
])
def test_vitd_thresholds_and_units(value, unit, indicator):
    record = patient(OSTEOPOROSIS_T, obs("d", "62292-8", value, unit))
    found = supplementation.vitamin_d_status(record, TODAY, S)
    assert (found[0].indicator if found else None) == indicator


def test_vitd_warning_offers_repletion_then_maintenance_and_card_renders():
    card = cards(patient(OSTEOPOROSIS_T, obs("d", "62292-8", 12, "ng/mL")))["C-VITD-LOW"]
    assert card["indicator"] == "warning"
    assert "25-OH vitamin D 12 ng/mL on 2025-03-01" in card["detail"]
    assert "zoledronic acid or denosumab" in card["summary"]
    (suggestion,) = card["suggestions"]
    replete, maintain = (a["resource"] for a in suggestion["actions"])
    assert replete["resourceType"] == "MedicationRequest" and replete["subject"] == {"reference": "Patient/p"}
    assert replete["medicationCodeableConcept"]["coding"][0]["code"] == "2418"
    assert replete["dosageInstruction"][0]["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "wk",
                                                                    "count": 8}
    assert replete["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 50000
    # maintenance starts when the 8-week course ends
    assert maintain["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"]["start"] == "2025-07-27"


def test_vitd_on_daily_supplement_gets_repletion_only_and_started_after_is_info():
    low = obs("d", "62292-8", 15, "ng/mL", "2025-03-01")
    before = patient(OSTEOPOROSIS_T, low, med("v", VIT_D, start="2024-06-01"))
    (f,) = supplementation.vitamin_d_status(before, TODAY, S)
    assert f.indicator == "warning" and f.suggestions == ("replete",)
    after = patient(OSTEOPOROSIS_T, low, med("v", VIT_D, start="2025-03-15"))
    (f,) = supplementation.vitamin_d_status(after, TODAY, S)
    assert f.indicator == "info" and f.suggestions == () and "under way" in f.variables["status"]


def test_vitd_quiet_without_bone_indication_stale_or_missing_value():
    assert supplementation.vitamin_d_status(patient(obs("d", "62292-8", 12, "ng/mL")), TODAY, S) == []
    stale = obs("d", "62292-8", 12, "ng/mL", "2024-04-01")  # 14 months old
    assert supplementation.vitamin_d_status(patient(OSTEOPOROSIS_T, stale), TODAY, S) == []
    assert supplementation.vitamin_d_status(patient(OSTEOPOROSIS_T), TODAY, S) == []


def test_vitd_thresholds_follow_settings():
    record = patient(OSTEOPOROSIS_T, obs("d", "62292-8", 22, "ng/mL"))
    strict = dataclasses.replace(S, vitamin_d_deficient_ng_ml=25.0)
    assert supplementation.vitamin_d_status(record, TODAY, strict)[0].indicator == "warning"


# --- C-SUPP-CAVD review -----------------------------------------------------

def test_supp_leaves_vitamin_d_to_the_repletion_card_when_deficient():
    record = patient(OSTEOPOROSIS_T, obs("d", "62292-8", 12, "ng/mL"))
    (f,) = supplementation.calcium_vitamin_d(record, TODAY, S)
    assert f.suggestions == ("calcium-carbonate",)
    assert any("repletion first" in fact for fact in f.facts)
    # on calcium already: the deficient patient gets only C-VITD-LOW
    assert supplementation.calcium_vitamin_d(patient(OSTEOPOROSIS_T, obs("d", "62292-8", 12, "ng/mL"),
                                                     med("c", CALCIUM)), TODAY, S) == []
    # 20-29: maintenance stays on the supplement card
    (f,) = supplementation.calcium_vitamin_d(patient(OSTEOPOROSIS_T, obs("d", "62292-8", 24, "ng/mL")), TODAY, S)
    assert f.suggestions == ("calcium-carbonate-and-vitamin-d", "vitamin-d-only")


def test_supp_uses_latest_calcium_and_corrects_it_with_albumin():
    # An old high corrected value is outranked by a newer normal measured one.
    old_ca = obs("c1", "17861-6", 10.6, "mg/dL", "2024-09-01")
    old_alb = obs("a1", "1751-7", 3.4, "g/dL", "2024-09-01")  # corrected 11.08
    new_ca = obs("c2", "17861-6", 9.6, "mg/dL", "2025-04-01")
    (f,) = supplementation.calcium_vitamin_d(patient(OSTEOPOROSIS_T, old_ca, old_alb, new_ca), TODAY, S)
    assert f.suggestions == ("calcium-carbonate-and-vitamin-d", "vitamin-d-only")
    # measured 10.7 but high albumin: corrected 10.3, calcium allowed
    ca = obs("c", "17861-6", 10.7, "mg/dL")
    alb = obs("a", "1751-7", 4.5, "g/dL")
    (f,) = supplementation.calcium_vitamin_d(patient(OSTEOPOROSIS_T, ca, alb), TODAY, S)
    assert "calcium" in f.suggestions[0]
    # low albumin: measured 10.3, corrected 10.9 > 10.5: calcium suppressed, and vitamin D too
    # (review 12: find the high calcium's cause first, as C-VITD-LOW and C-GIOP hold it)
    high = patient(OSTEOPOROSIS_T, obs("c", "17861-6", 10.3, "mg/dL"), obs("a", "1751-7", 3.25, "g/dL"))
    assert supplementation.calcium_vitamin_d(high, TODAY, S) == []
    assert "Corrected calcium 10.9 mg/dL" in vitamin_d_repletion_hold(high, S)


def test_supp_hypercalcemia_condition_and_summary_names_what_is_missing():
    hyper = {"resourceType": "Condition", "id": "h", "code": coding(t.ICD10CM, "E83.52")}
    assert supplementation.calcium_vitamin_d(patient(OSTEOPOROSIS_T, hyper), TODAY, S) == []
    assert "C-SUPP-CAVD" not in cards(patient(OSTEOPOROSIS_T, hyper))
    # On calcium already, no vitamin D: the summary names only what is missing.
    card = cards(patient(OSTEOPOROSIS_T, med("c", CALCIUM)))["C-SUPP-CAVD"]
    assert card["summary"] == "Bone health: no active vitamin D supplement; vitamin D3 800-1000 IU daily"


def test_supp_diet_first_one_tablet_a_day_and_vitamin_d_alone_when_intake_is_adequate():
    card = cards(patient(OSTEOPOROSIS_T))["C-SUPP-CAVD"]
    combined, alone = card["suggestions"]
    calcium_order = combined["actions"][0]["resource"]
    assert calcium_order["dosageInstruction"][0]["timing"]["repeat"] == {"frequency": 1, "period": 1, "periodUnit": "d"}
    assert "500 mg elemental" in calcium_order["dosageInstruction"][0]["text"]
    assert [a["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for a in alone["actions"]] == ["245500"]
    assert combined["isRecommended"] and not alone["isRecommended"]
    assert "Skip calcium when dietary intake is adequate" in card["detail"]


def test_supp_untreated_osteopenia_only_with_low_intake():
    osteopenia = obs("t", "38267-1", -1.8, "{T-score}", "2025-02-01")
    assert supplementation.calcium_vitamin_d(patient(osteopenia), TODAY, S) == []  # USPSTF: primary prevention
    low = {"resourceType": "Condition", "id": "e58", "code": coding(t.ICD10CM, "E58"), "onsetDateTime": "2025-01-10"}
    (f,) = supplementation.calcium_vitamin_d(patient(osteopenia, low), TODAY, S)
    assert any("Low calcium intake" in fact for fact in f.facts)
    assert f.trigger == dt.date(2025, 1, 10)  # the low intake: a new reason; the DXA date is not
    # treated osteopenia: the drug is the indication
    (f,) = supplementation.calcium_vitamin_d(patient(osteopenia, med("a", ALENDRONATE, "2024-05-01")), TODAY, S)
    assert f.trigger == dt.date(2024, 5, 1)


# --- C-MON-DXA-DUE / C-MON-ONTX ----------------------------------------------

def treated(dxa_date, *extra):
    return patient(obs("t", "38267-1", -2.6, "{T-score}", dxa_date), med("a", ALENDRONATE, "2022-01-01"),
                   med("c", CALCIUM), med("v", VIT_D), *extra)


@pytest.mark.parametrize("dxa_date,due", [
    ("2023-05-01", True),    # 25 months
    ("2023-06-01", True),    # exactly 24 months: due today
    ("2023-06-02", False),   # a day short of 24 months
    ("2023-07-01", False),   # 23 months
])
def test_dxa_due_at_24_months_on_therapy(dxa_date, due):
    found = cards(treated(dxa_date))
    assert ("C-MON-DXA-DUE" in found) is due
    # second-pass 7: nothing due or abnormal, no standing "next DXA" reminder
    assert "C-MON-ONTX" not in found
    assert "C-SCREEN-DXA" not in found


def test_dxa_due_order_is_coded_cpt_and_snomed():
    card = cards(treated("2023-05-01"))["C-MON-DXA-DUE"]
    res = card["suggestions"][0]["actions"][0]["resource"]
    assert res["resourceType"] == "ServiceRequest" and res["status"] == "draft" and res["intent"] == "order"
    assert {(c["system"], c["code"]) for c in res["code"]["coding"]} == {
        ("http://www.ama-assn.org/go/cpt", "77080"), ("http://snomed.info/sct", "312681000")}
    assert "Last DXA on 2023-05-01" in card["detail"] and "On alendronate since 2022-01-01" in card["detail"]
    assert "review adherence" in card["detail"]


def supplied(start, days=28, repeats=2):
    """Alendronate weekly, dispensed for `days` x (1 + repeats)."""
    return {**med("a", ALENDRONATE, start), "dispenseRequest": {
        "expectedSupplyDuration": {"value": days, "unit": "days", "code": "d"}, "numberOfRepeatsAllowed": repeats}}


def test_ontx_refill_gap_fires_and_a_covered_supply_does_not():
    base = (obs("t", "38267-1", -2.6, "{T-score}", "2024-03-15"), med("c", CALCIUM), med("v", VIT_D))
    # 84 days from 2025-01-01 ends 2025-03-26: 67 days ago on 2025-06-01, more than 30
    found = cards(patient(*base, supplied("2025-01-01")))
    card = found["C-MON-ONTX"]
    assert "no alendronate refill since 2025-03-26" in card["summary"]
    assert "suggestions" not in card and card["overrideReasons"]
    assert "2026-03-15" in card["detail"]  # next DXA date
    # 84 days from 2025-02-15 ends 2025-05-10: 22 days ago, inside the 30 days of grace
    assert "C-MON-ONTX" not in cards(patient(*base, supplied("2025-02-15")))
    # renewed after the supply ran out
    renewed = {**supplied("2025-04-20"), "id": "a2"}
    assert "C-MON-ONTX" not in cards(patient(*base, supplied("2025-01-01"), renewed))
    # no supply on the order: unknown, not a gap
    assert "C-MON-ONTX" not in cards(patient(*base, med("a", ALENDRONATE, "2022-01-01")))
    (f,) = monitoring.on_treatment_monitoring(patient(*base, supplied("2025-01-01")), TODAY, S)
    assert f.trigger == dt.date(2025, 3, 26)


def test_ontx_new_fracture_on_treatment_and_calcium_out_of_range():
    def started_recently(*extra):  # alendronate since 2024-09-01
        return patient(obs("t", "38267-1", -2.6, "{T-score}", "2024-08-15"), med("a", ALENDRONATE, "2024-09-01"),
                       med("c", CALCIUM), med("v", VIT_D), *extra)

    wrist = {"resourceType": "Condition", "id": "w", "code": coding(t.ICD10CM, "S52.501A"),
             "onsetDateTime": "2025-04-01"}
    (f,) = monitoring.on_treatment_monitoring(started_recently(wrist), TODAY, S)
    assert "a fracture on treatment" in f.variables["headline"] and f.trigger == dt.date(2025, 4, 1)
    # the fracture before the drug started is no fracture on treatment
    early = {**wrist, "onsetDateTime": "2024-06-01"}
    assert monitoring.on_treatment_monitoring(started_recently(early), TODAY, S) == []
    # three years into the course it is treatment failure: that card takes it, not this one
    assert monitoring.on_treatment_monitoring(treated("2024-03-15", wrist), TODAY, S) == []
    assert on_therapy.treatment_failure(treated("2024-03-15", wrist), TODAY, S)
    low = obs("ca", "17861-6", 8.1, "mg/dL", "2025-05-01")
    (f,) = monitoring.on_treatment_monitoring(treated("2024-03-15", low), TODAY, S)
    assert f.variables["headline"] == "low calcium" and f.trigger == dt.date(2025, 5, 1)
    assert monitoring.on_treatment_monitoring(treated("2024-03-15", obs("ca", "17861-6", 8.6, "mg/dL")),
                                              TODAY, S) == []


def test_dxa_due_without_any_dxa_for_treated_or_osteoporosis_but_not_screening():
    on_drug = patient(med("a", ALENDRONATE, "2024-01-01"))
    found = cards(on_drug)
    assert "C-MON-DXA-DUE" in found and "C-SCREEN-DXA" not in found and "C-MON-ONTX" not in found
    assert "No DXA on file" in found["C-MON-DXA-DUE"]["detail"]
    hip = {"resourceType": "Condition", "id": "f", "code": coding(t.ICD10CM, "M80.051A"), "onsetDateTime": "2024-01-01"}
    found = cards(patient(hip))
    assert "C-MON-DXA-DUE" in found and "C-SCREEN-DXA" not in found


def test_oncology_only_antiresorptive_is_not_monitored_therapy():
    xgeva = {"resourceType": "MedicationAdministration", "id": "x", "status": "completed",
             "effectiveDateTime": "2025-05-01", "medicationCodeableConcept": {"text": "Xgeva 120 mg"}}
    record = patient(xgeva, obs("t", "38267-1", -0.5, "{T-score}", "2022-01-01"))
    assert monitoring.monitored_therapy(record) == []
    assert monitoring.dxa_due(record, TODAY, S) == [] and monitoring.on_treatment_monitoring(record, TODAY, S) == []


@pytest.mark.parametrize("t_score,years", [(-2.0, 2), (-2.4, 2), (-1.99, 3), (-1.5, 3), (-1.49, 5), (-1.1, 5)])
def test_osteopenia_interval_by_lowest_t(t_score, years):
    record = patient(obs("t", "38263-0", t_score, "{T-score}", "2020-01-01"))
    assert monitoring.dxa_schedule(record, S)[:2] == ("osteopenia", years * 12)
    # due exactly at the interval, quiet a month before it
    last = dt.date(2020, 1, 1)
    due_day = dt.date(last.year + years, 1, 1)
    assert monitoring.dxa_due(patient(obs("t", "38263-0", t_score, "{T-score}", "2020-01-01"), today=due_day),
                              due_day, S)
    early = due_day - dt.timedelta(days=31)
    assert monitoring.dxa_due(patient(obs("t", "38263-0", t_score, "{T-score}", "2020-01-01"), today=early),
                              early, S) == []


def test_osteopenia_without_t_score_and_normal_bmd_are_quiet():
    coded = {"resourceType": "Condition", "id": "o", "code": coding(t.ICD10CM, "M85.80")}
    assert monitoring.dxa_schedule(patient(coded), S) is None
    assert monitoring.dxa_schedule(patient(obs("t", "38267-1", -0.4, "{T-score}", "2015-01-01")), S) is None


def test_osteopenia_intervals_follow_settings():
    record = patient(obs("t", "38263-0", -1.7, "{T-score}", "2023-01-01"))
    assert monitoring.dxa_due(record, TODAY, S) == []
    assert monitoring.dxa_due(record, TODAY, dataclasses.replace(S, osteopenia_dxa_years=(1, 2, 4)))


# --- C-SCREEN-DXA -------------------------------------------------------------

@pytest.mark.parametrize("gender,birth,extra,fires", [
    ("female", "1960-01-15", (), "dxa"),          # 65
    ("female", "1960-06-02", (), None),           # 64 (65 tomorrow)
    ("female", "1960-06-01", (), "dxa"),          # 65 today
    ("male", "1955-03-01", (), None),             # man 70: never by age (MON-5)
    ("female", "1967-02-11", ("smoker",), "dxa-after-risk-assessment"),
    ("female", "1967-02-11", ("never",), None),
    ("female", "1967-02-11", ("wrist",), "dxa-after-risk-assessment"),
    # second-pass 5 / USPSTF25: glucocorticoid users are not screened by the risk-tool path (C-GIOP instead)
    ("female", "1967-02-11", ("steroid",), None),
    ("female", "1967-02-11", ("alcohol",), "dxa-after-risk-assessment"),
    ("female", "1985-02-11", ("smoker",), None),  # 40: premenopausal
    ("male", "1965-01-01", ("smoker",), None),
])
def test_screening_population(gender, birth, extra, fires):
    resources = []
    if "smoker" in extra or "never" in extra:
        value = "77176002" if "smoker" in extra else "266919005"
        resources.append({"resourceType": "Observation", "id": "s", "status": "final",
                          "code": coding(t.LOINC, "72166-2"), "effectiveDateTime": "2025-01-01",
                          "valueCodeableConcept": coding(t.SNOMED, value)})
    if "wrist" in extra:
        resources.append({"resourceType": "Condition", "id": "w", "code": coding(t.ICD10CM, "S52.531A"),
                          "onsetDateTime": "2023-01-01"})
    if "steroid" in extra:
        resources.append(med("s", {"text": "prednisone 10 mg tablet"}, start="2024-06-01"))
    if "alcohol" in extra:
        resources.append({"resourceType": "Condition", "id": "a", "code": coding(t.ICD10CM, "F10.20")})
    found = monitoring.screening_dxa(patient(*resources, gender=gender, birth=birth), TODAY, S)
    assert (found[0].suggestions[0] if found else None) == fires


def test_screening_quiet_with_any_dxa_or_treatment():
    assert monitoring.screening_dxa(patient(obs("t", "38267-1", -0.5, "{T-score}", "2010-01-01"),
                                            birth="1950-01-01"), TODAY, S) == []
    dxa_procedure = {"resourceType": "Procedure", "id": "x", "status": "completed",
                     "code": coding(t.CPT, "77080"), "performedDateTime": "2012-01-01"}
    assert monitoring.screening_dxa(patient(dxa_procedure, birth="1950-01-01"), TODAY, S) == []
    assert monitoring.screening_dxa(patient(med("r", {"text": "raloxifene 60 mg"}), birth="1950-01-01"), TODAY, S) == []


def test_screening_card_renders_order_and_grade():
    card = cards(patient(birth="1950-01-01"))["C-SCREEN-DXA"]
    assert "grade B" in card["detail"] and "Woman aged 75" in card["detail"]
    assert card["suggestions"][0]["isRecommended"]
    assert card["suggestions"][0]["actions"][0]["resource"]["code"]["coding"][0]["code"] == "77080"


# --- C-LAB-BASELINE -------------------------------------------------------------

def labs(date, skip=()):
    out = {"egfr": obs("e", "98979-8", 70, "mL/min/{1.73_m2}", date), "calcium": obs("c", "17861-6", 9.4, "mg/dL", date),
           "vitamin_d": obs("d", "62292-8", 35, "ng/mL", date)}
    return [r for k, r in out.items() if k not in skip]


@pytest.mark.parametrize("date,fires", [("2024-07-01", False), ("2024-06-02", False), ("2024-05-01", True)])
def test_baseline_labs_age_boundary(date, fires):
    found = monitoring.baseline_labs(patient(OSTEOPOROSIS_T, *labs(date)), TODAY, S)
    assert bool(found) is fires


def test_baseline_labs_orders_only_what_is_missing():
    (f,) = monitoring.baseline_labs(patient(OSTEOPOROSIS_T, *labs("2025-03-01", skip=("vitamin_d",))), TODAY, S)
    assert f.suggestions == ("vitamin-d", "bone-panel-extra")
    (f,) = monitoring.baseline_labs(patient(OSTEOPOROSIS_T, *labs("2025-03-01", skip=("calcium",))), TODAY, S)
    assert f.suggestions == ("calcium", "albumin", "bone-panel-extra")
    card = cards(patient(OSTEOPOROSIS_T))["C-LAB-BASELINE"]
    loinc = [a["resource"]["code"]["coding"][0]["code"] for s in card["suggestions"] for a in s["actions"]]
    assert loinc == ["98979-8", "17861-6", "62292-8", "1751-7", "2777-1", "6768-6", "2731-8"]
    assert card["selectionBehavior"] == "any"
    assert [s["isRecommended"] for s in card["suggestions"]] == [True, True, True, True, False]


def test_baseline_labs_quiet_when_not_indicated_or_on_therapy():
    assert monitoring.baseline_labs(patient(obs("t", "38267-1", -1.8, "{T-score}", "2025-02-01")), TODAY, S) == []
    assert monitoring.baseline_labs(patient(OSTEOPOROSIS_T, med("a", ALENDRONATE)), TODAY, S) == []
    assert monitoring.baseline_labs(patient(OSTEOPOROSIS_T, birth="1990-01-01"), TODAY, S) == []  # premenopausal


def test_every_missing_lab_label_maps_to_a_card_suggestion():
    record = patient(OSTEOPOROSIS_T)
    labels = missing_baseline_labs(record, S)
    assert len(labels) == 3 and set(labels) == set(monitoring.BASELINE_LAB_KEYS)
    keys = {s["key"] for s in card_render.load_card("C-LAB-BASELINE")["suggestions"]}
    assert set(monitoring.BASELINE_LAB_KEYS.values()) <= keys


def test_ontx_lists_only_the_checks_that_apply_and_leaves_a_missing_dxa_to_its_own_card():
    """Clinical review: every check (refill gap, fracture, calcium) was listed whatever applied,
    and with no DXA on file the card said "Next DXA due on or after now", repeating C-MON-DXA-DUE."""
    wrist = {"resourceType": "Condition", "id": "w", "code": coding(t.ICD10CM, "S52.501A"),
             "onsetDateTime": "2025-04-01"}
    found = cards(patient(med("a", ALENDRONATE, "2024-09-01"), med("c", CALCIUM), med("v", VIT_D), wrist))
    detail = found["C-MON-ONTX"]["detail"]
    assert "**Fracture on treatment:**" in detail
    assert "Refill gap" not in detail and "Calcium out of range" not in detail
    assert "Next DXA" not in detail and "C-MON-DXA-DUE" in found
    # With a DXA on file the next one is dated; a low calcium brings its own check.
    low = obs("ca", "17861-6", 8.1, "mg/dL", "2025-05-01")
    detail = cards(treated("2024-03-15", low))["C-MON-ONTX"]["detail"]
    assert "**Calcium out of range:**" in detail and "Fracture on treatment" not in detail
    assert "Next DXA due on or after 2026-03-15." in detail


def test_ontx_does_not_date_a_next_dxa_that_is_already_due():
    """Re-review: 'Next DXA due on or after 2026-05-31' beside C-MON-DXA-DUE's 'due since 2026-05-31'."""
    low = obs("ca", "17861-6", 8.1, "mg/dL", "2025-05-01")
    found = cards(treated("2023-01-15", low))  # 28 months ago: due
    assert "C-MON-DXA-DUE" in found and "Next DXA" not in found["C-MON-ONTX"]["detail"]
    assert "Next DXA due on or after 2026-03-15." in cards(treated("2024-03-15", low))["C-MON-ONTX"]["detail"]
