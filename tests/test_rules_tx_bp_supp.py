"""C-TX-BP (TX-0/1/1a/2) and C-SUPP-CAVD (TX-7): content and edge cases."""

import datetime as dt

from cds_service import engine
from cds_service import fixtures as fx
from cds_service.fhir import terminology as t
from cds_service.record import build_record
from cds_service.rules import supplementation
from cds_service.rules.diagnosis import HIGH, VERY_HIGH, assess
from cds_service.rules.settings import ClinicalSettings
from tests.conftest import TODAY, coding

S = ClinicalSettings()


def cards_for(name, today=TODAY, settings=S):
    bundle = fx.load_patient(name, today=today)
    record = build_record(fx.prefetch_from_bundle(bundle), today=today, settings=settings)
    return {c["source"]["topic"]["code"]: c for c in engine.evaluate("patient-view", record, today, settings, strict=True)}


def test_tx_bp_card_content_postmenopausal():
    card = cards_for("tx-bp-postmenopausal-osteoporosis")["C-TX-BP"]
    assert card["indicator"] == "info"
    assert "Lumbar spine T-score -2.7 on 2025-02-01" in card["detail"]
    assert "Femoral neck T-score -2.1 on 2025-02-01" in card["detail"]
    assert "eGFR 72 mL/min/1.73m2 on 2025-03-10" in card["detail"]
    assert "Recommendation 1a" in card["detail"] and "postmenopausal woman" in card["detail"]
    assert "obtain baseline labs" not in card["detail"]
    first = card["suggestions"][0]
    assert first["isRecommended"]
    res = first["actions"][0]["resource"]
    assert res["medicationCodeableConcept"]["coding"][0]["code"] == "904431"
    assert "plain water" in res["dosageInstruction"][0]["patientInstruction"]
    assert "30 minutes" in res["dosageInstruction"][0]["patientInstruction"]
    assert res["intent"] == "order" and res["status"] == "draft"


def test_tx_bp_dates_follow_today():
    later = dt.date(2026, 6, 1)  # one year after the anchor: every fixture date moves with it
    card = cards_for("tx-bp-postmenopausal-osteoporosis", today=later)
    assert "Lumbar spine T-score -2.7 on 2026-02-01" in card["C-TX-BP"]["detail"]
    assert "eGFR 72 mL/min/1.73m2 on 2026-03-10" in card["C-TX-BP"]["detail"]  # still 3 months old
    assert "obtain baseline labs" not in card["C-TX-BP"]["detail"]


def test_tx1a_stale_labs_still_fire_with_labs_note():
    bundle = fx.load_patient("tx-bp-postmenopausal-osteoporosis", today=TODAY)
    later = dt.date(2026, 6, 1)  # the same data read a year later: labs 15 months old
    record = build_record(fx.prefetch_from_bundle(bundle), today=later)
    cards = {c["source"]["topic"]["code"]: c for c in engine.evaluate("patient-view", record, later, S, strict=True)}
    assert "obtain baseline labs" in cards["C-TX-BP"]["detail"]
    assert "eGFR, serum calcium, 25-OH vitamin D" in cards["C-TX-BP"]["detail"]


def test_tx_bp_male_missing_labs_tx1a():
    card = cards_for("tx-bp-male-vertebral-fracture-no-labs")["C-TX-BP"]
    assert "man aged 50 or older" in card["detail"] and "Recommendation 1b" in card["detail"]
    assert "obtain baseline labs" in card["detail"] and "eGFR, serum calcium, 25-OH vitamin D" in card["detail"]
    assert "Vertebral fracture (probable fragility fracture) (S32.010A) on 2022-04-02" in card["detail"]


def _woman(*extra_obs, conditions=(), meds=(), birth="1955-01-01"):
    obs = [{"resourceType": "Observation", "id": "t", "status": "final", "code": coding(t.LOINC, "38267-1"),
            "effectiveDateTime": "2025-02-01", "valueQuantity": {"value": -2.6}}, *extra_obs]
    return build_record({
        "patient": {"resourceType": "Patient", "id": "w", "gender": "female", "birthDate": birth},
        "observations": {"resourceType": "Bundle", "entry": [{"resource": r} for r in obs]},
        "conditions": {"resourceType": "Bundle", "entry": [{"resource": r} for r in conditions]},
        "medicationRequests": {"resourceType": "Bundle", "entry": [{"resource": r} for r in meds]},
    }, today=TODAY)


def _codes(record):
    return [c["source"]["topic"]["code"] for c in engine.evaluate("patient-view", record, TODAY, S, strict=True)]


def _lab(code, value, unit, oid):
    return {"resourceType": "Observation", "id": oid, "status": "final", "code": coding(t.LOINC, code),
            "effectiveDateTime": "2025-03-01", "valueQuantity": {"value": value, "unit": unit}}


def test_tx_bp_suppressed_by_bp_contraindications():
    assert "C-TX-BP" in _codes(_woman())
    assert "C-TX-BP" not in _codes(_woman(_lab("98979-8", 28, "mL/min/{1.73_m2}", "e")))  # eGFR < 35: TX-3
    esoph = {"resourceType": "Condition", "id": "k", "code": coding(t.ICD10CM, "K22.2")}
    assert "C-TX-BP" not in _codes(_woman(conditions=[esoph]))
    # a missing eGFR is unknown, not low
    assert "C-TX-BP" in _codes(_woman())


def test_tx_bp_suppressed_when_on_denosumab_or_xgeva_or_in_holiday():
    prolia = {"resourceType": "MedicationRequest", "id": "d", "status": "active", "authoredOn": "2025-01-01",
              "medicationCodeableConcept": {"text": "Prolia 60 mg"}}
    xgeva = dict(prolia, medicationCodeableConcept={"text": "Xgeva 120 mg"})
    assert "C-TX-BP" not in _codes(_woman(meds=[prolia]))
    assert "C-TX-BP" not in _codes(_woman(meds=[xgeva]))
    holiday = {"resourceType": "MedicationRequest", "id": "h", "status": "completed", "authoredOn": "2018-01-01",
               "medicationCodeableConcept": coding(t.RXNORM, "904431"),
               "dispenseRequest": {"validityPeriod": {"start": "2018-01-01", "end": "2023-06-01"}}}
    assert "C-TX-BP" not in _codes(_woman(meds=[holiday]))
    # a new fracture after the holiday began ends it
    frac = {"resourceType": "Condition", "id": "f", "code": coding(t.ICD10CM, "S52.531A"), "onsetDateTime": "2023-09-01"}
    assert "C-TX-BP" in _codes(_woman(meds=[holiday], conditions=[frac]))


def test_vhr_goes_to_anabolic_not_bp():
    record = _woman(conditions=[{"resourceType": "Condition", "id": "f", "code": coding(t.ICD10CM, "M80.08XA"),
                                 "onsetDateTime": "2025-04-01"}])
    a = assess(record, S)
    assert a.risk == VERY_HIGH and any("Recent" in r for r in a.vhr_reasons)
    assert "C-TX-BP" not in _codes(record)
    assert assess(_woman(), S).risk == HIGH


def test_osteopenia_with_frax_at_threshold_is_treated():
    frax = _lab("90265-0", 22, "%", "m")
    record = _woman(frax)
    record = build_record({
        "patient": {"resourceType": "Patient", "id": "w", "gender": "female", "birthDate": "1955-01-01"},
        "observations": {"resourceType": "Bundle", "entry": [
            {"resource": _lab("38267-1", -2.0, "{T-score}", "t")}, {"resource": frax}]}}, today=TODAY)
    a = assess(record, S)
    assert a.diagnosis == "osteoporosis" and "FRAX 10-year major osteoporotic fracture probability 22% on 2025-03-01" in a.reasons
    assert "C-TX-BP" in _codes(record)


def test_supp_suggestions_vary_with_what_is_missing():
    card = cards_for("tx-bp-postmenopausal-osteoporosis")["C-SUPP-CAVD"]
    actions = card["suggestions"][0]["actions"]
    assert [a["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for a in actions] == ["282465", "245500"]
    assert "Lumbar spine T-score -2.7 on 2025-02-01" in card["detail"]

    ppi = {"resourceType": "MedicationRequest", "id": "p", "status": "active", "authoredOn": "2024-01-01",
           "medicationCodeableConcept": {"text": "omeprazole 20 mg"}}
    vit_d = {"resourceType": "MedicationRequest", "id": "v", "status": "active", "authoredOn": "2024-01-01",
             "medicationCodeableConcept": coding(t.RXNORM, "245500")}
    record = _woman(meds=[ppi, vit_d])
    findings = supplementation.calcium_vitamin_d(record, TODAY, S)
    assert findings[0].suggestions == ("calcium-citrate",)

    high_ca = _lab("17861-6", 10.9, "mg/dL", "c")
    # A high calcium holds both (review 12: find its cause first; vitamin D labels).
    assert supplementation.calcium_vitamin_d(_woman(high_ca), TODAY, S) == []
    assert supplementation.calcium_vitamin_d(_woman(high_ca, meds=[vit_d]), TODAY, S) == []


def test_supp_fires_for_treated_patient_without_diagnosis_data():
    prolia = {"resourceType": "MedicationAdministration", "id": "d", "status": "completed",
              "effectiveDateTime": "2025-03-01", "medicationCodeableConcept": coding(t.RXNORM, "993452")}
    record = build_record({"patient": {"resourceType": "Patient", "id": "x", "gender": "male", "birthDate": "1950-01-01"},
                           "medicationAdministrations": {"resourceType": "Bundle", "entry": [{"resource": prolia}]}},
                          today=TODAY)
    codes = _codes(record)
    assert "C-SUPP-CAVD" in codes and "C-TX-BP" not in codes


def test_supp_order_hook_variant():
    record = build_record({}, drafts=[{"resourceType": "MedicationRequest", "id": "d", "status": "draft",
                                        "medicationCodeableConcept": coding(t.RXNORM, "993452")},
                                       {"resourceType": "MedicationRequest", "id": "e", "status": "draft"}],
                          today=TODAY)
    findings = supplementation.calcium_vitamin_d_with_order(record, TODAY, S)
    assert findings and findings[0].facts[0] == "Ordering denosumab"
    assert supplementation.calcium_vitamin_d_with_order(build_record({}, today=TODAY), TODAY, S) == []
