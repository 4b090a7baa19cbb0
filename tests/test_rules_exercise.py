"""C-EXERCISE (EX-1/EX-2) and C-FALLS (FALL-1): content, boundaries, suggestions."""

import dataclasses

from cds_service import engine
from cds_service import fixtures as fx
from cds_service.record import build_record
from cds_service.card_render import load_card
from cds_service.rules import exercise
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import TODAY, coding

S = ClinicalSettings()
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
PT_REFERRAL = "444831000124102"


def cards_for(name, today=TODAY, settings=S):
    bundle = fx.load_patient(name, today=today)
    record = build_record(fx.prefetch_from_bundle(bundle), today=today, settings=settings)
    return {c["source"]["topic"]["code"]: c for c in engine.evaluate("patient-view", record, today, settings, strict=True)}


def patient(birth, gender="female"):
    return {"resourceType": "Patient", "id": "p1", "gender": gender, "birthDate": birth}


def t_score(value, date, code="38263-0"):
    return {"resourceType": "Observation", "id": f"t{value}", "status": "final", "code": coding(LOINC, code),
            "effectiveDateTime": date, "valueQuantity": {"value": value, "unit": "{T-score}"}}


def condition(cid, system, code, onset, status="active"):
    return {"resourceType": "Condition", "id": cid, "code": coding(system, code), "onsetDateTime": onset,
            "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", status)}


def fall_risk(date, positive):
    return {"resourceType": "Observation", "id": "fra", "status": "final", "code": coding(LOINC, "73830-2"),
            "effectiveDateTime": date, "valueBoolean": positive}


def record(*resources, today=TODAY, settings=S):
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
    return build_record({"all": bundle}, today=today, settings=settings)


def render(rec, today=TODAY):
    return {c["source"]["topic"]["code"]: c for c in engine.evaluate("patient-view", rec, today, S, strict=True)}


def suggested_codes(card):
    return [c["code"] for s in card.get("suggestions", ()) for a in s["actions"]
            for c in a["resource"]["code"]["coding"]]


# --- C-EXERCISE -----------------------------------------------------------

def test_osteoporosis_with_vertebral_fracture_gets_precautions_and_pt_referral():
    card = cards_for("c-exercise-osteoporosis-vertebral-fracture")["C-EXERCISE"]
    assert card["indicator"] == "info"
    assert "with spinal precautions" in card["summary"]
    detail = card["detail"]
    assert "Lumbar spine T-score -2.8 on 2025-01-20" in detail
    assert "Vertebral fragility fracture (11311601000119109) on 2023-09-10" in detail
    assert detail.count("Vertebral fragility fracture (11311601000119109) on 2023-09-10") == 1
    assert "History of falling on record (Z91.81, 2024-11-02)" in detail
    for words in ("progressive resistance", "balance", "weight-bearing", "2-3 sessions",
                  "7 months", "**supervised**", "spine-extensor", "posture",
                  "end-range bending"):
        assert words in detail, words
    # the full prescription is one click away, on the guidance page
    guidance = load_card("C-EXERCISE")["guidance"]
    for words in ("60 minutes", "end-range\nspinal flexion", "hip hinge", "FES-I", "Too Fit To Fracture"):
        assert words in guidance, words
    assert PT_REFERRAL in suggested_codes(card)
    res = card["suggestions"][0]["actions"][0]["resource"]
    assert res["resourceType"] == "ServiceRequest" and res["subject"] == {"reference": "Patient/pv-ex-01"}
    assert "vertebral fracture" in res["reasonCode"][0]["text"] and "history of falls" in res["reasonCode"][0]["text"]


def test_spinal_precautions_with_osteoporosis_but_not_with_osteopenia_alone():
    osteoporosis = render(record(patient("1955-01-01"), t_score(-2.6, "2025-01-10")))["C-EXERCISE"]
    osteopenia = render(record(patient("1955-01-01"), t_score(-1.7, "2025-01-10")))["C-EXERCISE"]
    assert exercise.SPINAL_PRECAUTIONS in osteoporosis["detail"]
    assert exercise.SPINAL_PRECAUTIONS not in osteopenia["detail"]
    assert "spinal flexion" not in osteopenia["detail"] and "spinal precautions" not in osteopenia["summary"]
    # neither carries a PT referral: no fracture, fall or balance problem on record
    assert "suggestions" not in osteoporosis and "suggestions" not in osteopenia


def test_osteopenia_with_vertebral_fracture_gets_spinal_precautions():
    rec = record(patient("1955-01-01"), t_score(-1.7, "2025-01-10"),
                 condition("vfx", ICD, "S32.010A", "2023-03-01", "resolved"))
    card = render(rec)["C-EXERCISE"]
    assert exercise.SPINAL_PRECAUTIONS in card["detail"]
    assert PT_REFERRAL in suggested_codes(card)


def test_precautions_do_not_use_fear_inducing_generic_wording():
    for text in (exercise.SPINAL_PRECAUTIONS.lower(), load_card("C-EXERCISE")["guidance"].lower()):
        for generic in ("don't bend", "do not bend", "never bend", "never twist", "avoid bending"):
            assert generic not in text
        assert "rapid" in text and "twisting" in text and "hip hinge" in text
    assert "weighted" in load_card("C-EXERCISE")["guidance"]


def test_normal_bmd_without_fracture_is_quiet():
    assert "C-EXERCISE" not in cards_for("c-exercise-near-miss-normal-bmd")
    assert exercise.exercise_prescription(record(patient("1950-01-01"), t_score(-0.9, "2025-01-10")), TODAY, S) == []


def test_no_bone_data_is_quiet_not_abnormal():
    assert exercise.exercise_prescription(record(patient("1950-01-01")), TODAY, S) == []


def test_gait_problem_means_supervised_and_referral():
    rec = record(patient("1955-01-01"), t_score(-1.7, "2025-01-10"), condition("gait", ICD, "R26.81", "2025-02-01"))
    card = render(rec)["C-EXERCISE"]
    assert "**supervised**" in card["detail"] and "R26.81" in card["detail"]
    assert PT_REFERRAL in suggested_codes(card)


def test_fresh_fracture_rehabilitation_follows_the_setting():
    fracture = condition("wrist", ICD, "S52.531A", "2025-04-15")  # 47 days before TODAY, patient >= 50
    rec = record(patient("1950-01-01"), fracture)
    card = render(rec)["C-EXERCISE"]
    assert "Fresh fracture (last 12 weeks)" in card["detail"]
    assert "rehabilitation after a fracture" in card["suggestions"][0]["actions"][0]["resource"]["reasonCode"][0]["text"]
    short = dataclasses.replace(S, fresh_fracture_weeks=6)  # 47 days > 6 weeks: no longer fresh
    findings = exercise.exercise_prescription(record(patient("1950-01-01"), fracture, settings=short), TODAY, short)
    assert findings and findings[0].suggestions == ()  # a wrist fracture alone does not call for PT


# --- C-FALLS -------------------------------------------------------------------

def test_falls_fires_at_65_with_osteopenia_and_orders_assessment():
    card = cards_for("c-falls-osteopenia-age-65")["C-FALLS"]
    assert card["indicator"] == "info"
    assert "Age 65 on 2025-06-01" in card["detail"] and "Femoral neck T-score -1.6 on 2025-04-01" in card["detail"]
    for words in ("home hazards", "vision", "dizziness", "orthostatic blood pressure", "footwear"):
        assert words in card["detail"], words
    for words in ("Home safety", "Vision and hearing", "sedatives", "Orthostatic blood pressure",
                  "Feet and footwear", "assistive devices", "STEADI"):
        assert words in load_card("C-FALLS")["guidance"], words
    codes = suggested_codes(card)
    assert "73830-2" in codes
    res = card["suggestions"][0]["actions"][0]["resource"]
    assert res["resourceType"] == "ServiceRequest" and res["status"] == "draft"


def test_falls_age_boundary_64_vs_65():
    bone = t_score(-1.6, "2025-04-01")
    day_before = record(patient("1960-06-02"), bone)   # 65 tomorrow
    birthday = record(patient("1960-06-01"), bone)     # 65 today
    assert day_before.age == 64 and birthday.age == 65
    assert exercise.fall_prevention(day_before, TODAY, S) == []
    assert [f.card_id for f in exercise.fall_prevention(birthday, TODAY, S)] == ["C-FALLS"]
    assert "C-FALLS" not in cards_for("c-falls-near-miss-osteopenia-age-64")
    # the threshold is a setting
    younger = dataclasses.replace(S, fall_prevention_min_age=60)
    assert exercise.fall_prevention(day_before, TODAY, younger)


def test_fall_history_fires_from_50_without_bone_disease():
    card = cards_for("c-falls-fall-history-age-55")["C-FALLS"]
    assert "History of falling on record (Z91.81, 2025-03-20)" in card["detail"]
    assert "C-FALLS" not in cards_for("c-falls-near-miss-fall-history-age-49")
    snomed_fall = condition("f", SCT, "161898004", "2025-01-01", "resolved")  # history stays history
    at_50 = record(patient("1975-05-31", "male"), snomed_fall)
    at_49 = record(patient("1975-06-02", "male"), snomed_fall)
    assert exercise.fall_prevention(at_50, TODAY, S) and not exercise.fall_prevention(at_49, TODAY, S)


def test_unknown_age_is_quiet():
    rec = record({"resourceType": "Patient", "id": "p1", "gender": "female"},
                 condition("f", ICD, "Z91.81", "2025-01-01"), t_score(-2.7, "2025-01-10"))
    assert exercise.fall_prevention(rec, TODAY, S) == []


def test_recent_assessment_is_not_reordered_and_negative_screen_is_quiet():
    bone = t_score(-1.6, "2025-04-01")
    positive = exercise.fall_prevention(record(patient("1950-01-01"), bone, fall_risk("2025-03-01", True)), TODAY, S)
    assert positive[0].suggestions == ()
    assert "Fall-risk assessment on 2025-03-01: positive" in positive[0].facts
    negative = record(patient("1950-01-01"), bone, fall_risk("2025-03-01", False))
    assert exercise.fall_prevention(negative, TODAY, S) == []
    # a fall after the negative screen: the screen no longer describes the patient, assess again
    fallen = record(patient("1950-01-01"), bone, fall_risk("2025-03-01", False),
                    condition("f", ICD, "Z91.81", "2025-05-01"))
    again = exercise.fall_prevention(fallen, TODAY, S)
    assert again[0].suggestions == ("fall-risk-assessment",)
    assert any("after the fall-risk assessment" in f for f in again[0].facts)
    # a fall before the negative screen is what the screen assessed: done
    assessed = record(patient("1950-01-01"), bone, fall_risk("2025-03-01", False),
                      condition("f", ICD, "Z91.81", "2025-02-01"))
    assert exercise.fall_prevention(assessed, TODAY, S) == []
    # an old screen (over 12 months) is re-ordered
    old = exercise.fall_prevention(record(patient("1950-01-01"), bone, fall_risk("2024-03-01", False)), TODAY, S)
    assert old[0].suggestions == ("fall-risk-assessment",)
