"""Real-world encodings the service did not read (terminology review, termreview REPORT): each
chart goes through the app as an EHR would send it (the prefetch answered from the service's own
discovery templates by tests.fhir_test_server.FhirStore), with a quiet control beside it."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest

from cds_service.fhir import terminology as t
from cds_service.fhir import valuesets as vs
from cds_service.fhir.prefetch import render_template
from cds_service.services.prefetch_templates import PREFETCH
from fhir_test_server import FhirStore

TODAY = dt.date.today()
PID = "rw1"
ICD_OID, SNOMED_OID, LOINC_OID = "urn:oid:2.16.840.1.113883.6.90", "urn:oid:2.16.840.1.113883.6.96", \
    "urn:oid:2.16.840.1.113883.6.1"


def ago(days):
    return (TODAY - dt.timedelta(days=days)).isoformat()


def _concept(system, code, display):
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def patient(age=72, sex="female"):
    return {"resourceType": "Patient", "id": PID, "gender": sex, "birthDate": ago(age * 365 + 100)}


def obs(code, value=None, unit="", days=30, system=t.LOINC, display="", oid=None):
    r = {"resourceType": "Observation", "id": oid or f"o{code}{days}", "status": "final",
         "subject": {"reference": f"Patient/{PID}"}, "code": _concept(system, code, display or code),
         "effectiveDateTime": ago(days)}
    if value is not None:
        r["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return r


def cond(code, display, system=t.ICD10CM, days=60):
    return {"resourceType": "Condition", "id": f"c{code}", "subject": {"reference": f"Patient/{PID}"},
            "clinicalStatus": {"coding": [{"system": t.CONDITION_CLINICAL, "code": "active"}]},
            "code": _concept(system, code, display), "onsetDateTime": ago(days)}


def med(concept, days=60, rid="m1", status="active"):
    return {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
            "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": concept, "authoredOn": ago(days)}


def given(concept, days, rid="a1"):
    return {"resourceType": "MedicationAdministration", "id": rid, "status": "completed",
            "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": concept,
            "effectiveDateTime": ago(days)}


def draft(concept):
    return {"resourceType": "MedicationRequest", "id": "d1", "status": "draft", "intent": "order",
            "subject": {"reference": f"Patient/{PID}"}, "medicationCodeableConcept": concept}


def cards(client, *resources, hook="patient-view", drafts=()):
    """Card id -> card, for a chart fetched with the discovery templates."""
    store = FhirStore(list(resources))
    prefetch = {key: store.answer(render_template(template, {"patientId": PID})) for key, template in PREFETCH.items()}
    ctx = {"patientId": PID, "userId": "Practitioner/example"}
    if hook != "patient-view":
        ctx["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                              "entry": [{"resource": r} for r in drafts]}
        if hook == "order-select":
            ctx["selections"] = [f"MedicationRequest/{r['id']}" for r in drafts]
    resp = client.post(f"/cds-services/osteoporosis-{hook}",
                       json={"hookInstance": str(uuid.uuid4()), "hook": hook, "context": ctx, "prefetch": prefetch})
    assert resp.status_code == 200, resp.get_json()
    return {c["source"]["topic"]["code"]: c for c in resp.get_json()["cards"]}


# ---------------------------------------------------------------------------
# 1. Code systems sent under their HL7 OIDs (Epic: ICD-10-CM as urn:oid:2.16.840.1.113883.6.90)
# read as the URI the value sets use (valuesets.SYSTEM_ALIASES).
# ---------------------------------------------------------------------------

def _vertebral_fracture(system):
    """T -2.0 with a vertebral fracture 2 months ago: very high risk (C-TX-ANABOLIC)."""
    return (patient(), obs("38267-1", -2.0, "{T-score}", days=60),
            cond("M80.08XA", "Age-related osteoporosis w current pathological fracture, vertebra(e), init", system))


@pytest.mark.parametrize("system", [t.ICD10CM, ICD_OID])
def test_icd_10_cm_under_its_oid_is_icd_10_cm(client, system):
    got = cards(client, *_vertebral_fracture(system))
    assert got["C-TX-ANABOLIC"]["indicator"] == "warning" and "M80.08XA" in got["C-TX-ANABOLIC"]["detail"]


def test_an_unknown_oid_is_not_read_as_icd_10_cm(client):
    """Control: only the listed aliases; another OID with the same code stays unknown."""
    assert "C-TX-ANABOLIC" not in cards(client, *_vertebral_fracture("urn:oid:2.16.840.1.113883.6.3"))


def test_ckd_4_under_the_icd_oid_reads_the_kidney_band(client):
    """N18.4 with its official display (the comma defeats the name match) and alendronate on."""
    aln = med(_concept(t.RXNORM, "904431", "alendronic acid 70 MG Oral Tablet"))
    chart = (patient(), obs("38267-1", -2.7, "{T-score}", days=60), aln)
    ckd = cond("N18.4", "Chronic kidney disease, stage 4 (severe)", ICD_OID, days=400)
    assert cards(client, *chart, ckd)["C-SAFE-RENAL"]["indicator"] == "warning"
    assert "C-SAFE-RENAL" not in cards(client, *chart)


def test_aliases_reach_every_system_and_site_files():
    terms = vs.active()
    assert terms.concepts_for(SNOMED_OID, "161898004") == terms.concepts_for(t.SNOMED, "161898004") != set()
    assert terms.concepts_for(LOINC_OID, "1751-7") == {"lab-albumin"}
    assert terms.concepts_for("urn:oid:2.16.840.1.113883.6.88", "904431") == terms.concepts_for(t.RXNORM, "904431")
    assert terms.concepts_for("urn:oid:2.16.840.1.113883.6.12", "77080") == terms.concepts_for(t.CPT, "77080") != set()
    assert t.classify_fracture(_concept(ICD_OID, "S72.001D", "")).follow_up  # 7th character read as ICD-10-CM


def test_a_site_file_under_the_icd_oid_is_merged_as_icd_10_cm(tmp_path):
    import json
    (tmp_path / "hip.json").write_text(json.dumps({
        "resourceType": "ValueSet", "name": "FractureSiteHip", "status": "active",
        "compose": {"include": [{"system": ICD_OID, "filter": [{"property": "concept", "op": "is-a",
                                                                "value": "M97.0"}]}]}}))
    assert vs.load(tmp_path).concepts_for(t.ICD10CM, "M97.01XA") == {"fracture-site-hip"}


# ---------------------------------------------------------------------------
# 2. Denosumab biosimilars by brand (FDA approvals 2025, drug-denosumab / -oncology descriptions),
# and the oncology strengths whatever the name: denosumab 70 MG/ML (120 mg/1.7 mL), zoledronic
# acid 4 mg (Zometa) are exposure, not an osteoporosis regimen (no dose-interval warning).
# ---------------------------------------------------------------------------

def _bone_chart():
    return (patient(age=68), obs("38267-1", -2.8, "{T-score}", days=60),
            obs("98979-8", 72, "mL/min/{1.73_m2}", days=20), obs("17861-6", 9.4, "mg/dL", days=10),
            obs("62292-8", 35, "ng/mL", days=10))


def _doses(text, *days):
    return tuple(given({"text": text}, d, rid=f"a{d}") for d in days)


@pytest.mark.parametrize("brand", ["Stoboclo", "Ospomyv", "Obodence", "Conexxence", "Bildyos", "Bosaya", "Enoby",
                                   "Osvyrti", "Boncresa", "Prolia"])
def test_a_denosumab_biosimilar_by_brand_is_denosumab(client, brand):
    """Last dose 8 months ago: the rebound warning, not "start a bisphosphonate" (Prolia: control)."""
    got = cards(client, *_bone_chart(), *_doses(f"{brand} 60 mg/mL prefilled syringe", 243, 425))
    assert got["C-DMAB-OVERDUE"]["indicator"] == "critical" and "C-TX-BP" not in got


@pytest.mark.parametrize("text", ["1.7 ML denosumab 70 MG/ML Injection", "Osenvelt injection", "Xbryk injection",
                                  "Bomyntra injection", "Bilprevda injection", "Aukelso injection",
                                  "Xtrenbo injection", "Jubereq injection", "Oziltus injection",
                                  "zoledronic acid 4 mg/5 mL injection", "zoledronic acid 4 MG in 100 ML Injection",
                                  "100 ML zoledronic acid 0.04 MG/ML Injection"])
def test_oncology_strengths_and_brands_are_not_an_osteoporosis_regimen(client, text):
    """Monthly oncology dosing (bone metastases), last dose 28 days ago, re-ordered: read as the
    drug (its calcium and vitamin D card), not as a dose given too soon."""
    got = cards(client, *_bone_chart(), *_doses(text, 28, 56), hook="order-select", drafts=[draft({"text": text})])
    assert "C-SAFE-DOSE-INTERVAL" not in got and "C-SUPP-CAVD" in got


@pytest.mark.parametrize("text", ["Prolia 60 mg/mL prefilled syringe", "Stoboclo 60 mg/mL prefilled syringe",
                                  "100 ML zoledronic acid 0.05 MG/ML Injection", "Reclast 5 mg/100 mL"])
def test_osteoporosis_strengths_given_a_month_ago_still_warn(client, text):
    """Control: the osteoporosis products (60 mg every 6 months, 5 mg yearly) keep the warning."""
    got = cards(client, *_bone_chart(), *_doses(text, 28), hook="order-select", drafts=[draft({"text": text})])
    assert got["C-SAFE-DOSE-INTERVAL"]["indicator"] == "warning"


# ---------------------------------------------------------------------------
# 3. Albumin by method (LOINC 61151-7 BCG, 61152-5 BCP, 2862-1 electrophoresis) corrects the
# calcium like 1751-7: Ca 8.2 mg/dL with albumin 3.0 g/dL is 9.0 corrected, not hypocalcemia.
# ---------------------------------------------------------------------------

DMAB = _concept(t.RXNORM, "993452", "1 ML denosumab 60 MG/ML Prefilled Syringe")


def _low_calcium(albumin_code, albumin):
    return (patient(), obs("38267-1", -2.8, "{T-score}", days=60), obs("98979-8", 72, "mL/min/{1.73_m2}", days=20),
            obs("17861-6", 8.2, "mg/dL", days=10), obs("62292-8", 35, "ng/mL", days=10),
            obs(albumin_code, albumin, "g/dL", days=10))


@pytest.mark.parametrize("code", ["61151-7", "61152-5", "2862-1", "1751-7"])
def test_albumin_by_method_corrects_the_calcium(client, code):
    got = cards(client, *_low_calcium(code, 3.0), hook="order-select", drafts=[draft(DMAB)])
    assert "C-SAFE-HYPOCA" not in got and "C-SUPP-CAVD" in got


@pytest.mark.parametrize("code", ["61151-7", "1751-7"])
def test_a_normal_albumin_by_method_leaves_a_low_calcium_low(client, code):
    """Control: albumin 4.5 g/dL corrects 8.2 down to 7.8: still the critical card."""
    got = cards(client, *_low_calcium(code, 4.5), hook="order-select", drafts=[draft(DMAB)])
    assert got["C-SAFE-HYPOCA"]["indicator"] == "critical"


# ---------------------------------------------------------------------------
# 4. Creatinine clearance reported by the lab (LOINC 35591-7 Cockcroft-Gault, 2164-2 measured on
# 24 h urine; lab-creatinine-clearance, mL/min) is the kidney reading's creatinine clearance
# (second-pass 1: the bisphosphonate labels are written in CrCl). The newer of it and the
# service's own Cockcroft-Gault counts; on the same day the lab's.
# ---------------------------------------------------------------------------

ALN = _concept(t.RXNORM, "904431", "alendronic acid 70 MG Oral Tablet")


def _on_alendronate(*labs):
    return (patient(), obs("38267-1", -2.7, "{T-score}", days=60), med(ALN), *labs)


@pytest.mark.parametrize("code", ["35591-7", "2164-2"])
def test_a_reported_low_creatinine_clearance_is_read(client, code):
    got = cards(client, *_on_alendronate(obs(code, 25, "mL/min", days=20)))
    assert got["C-SAFE-RENAL"]["indicator"] == "warning"
    assert "Creatinine clearance 25 mL/min" in got["C-SAFE-RENAL"]["detail"]


@pytest.mark.parametrize("value, unit", [(60, "mL/min"), (25, "mL/min/{1.73_m2}")])
def test_a_normal_clearance_or_one_per_body_surface_is_quiet(client, value, unit):
    """Control: CrCl 60 is above every limit; a clearance per 1.73 m2 is another quantity (not read)."""
    assert "C-SAFE-RENAL" not in cards(client, *_on_alendronate(obs("35591-7", value, unit, days=20)))


def _kidney(*labs):
    from cds_service.record import build_record
    from cds_service.rules import facts
    from cds_service.rules.settings import ClinicalSettings
    from tests.conftest import TODAY as DAY
    def lab(code, days, value, unit):
        r = obs(code, value, unit, days)
        r["effectiveDateTime"] = (DAY - dt.timedelta(days=days)).isoformat()
        return r
    rec = build_record({"patient": {"resourceType": "Patient", "id": PID, "gender": "female", "birthDate": "1940-01-01"},
                        "all": {"resourceType": "Bundle", "entry": [{"resource": lab(*x)} for x in labs]}},
                       drafts=[], today=DAY, settings=ClinicalSettings())
    return facts.kidney(rec, ClinicalSettings())


def test_the_newer_clearance_counts_and_the_lab_s_on_the_same_day():
    # creatinine 1.0 mg/dL, 60 kg, 85-year-old woman: Cockcroft-Gault (140-85) x 60 / 72 x 0.85 = 39
    computed = (("2160-0", 20, 1.0, "mg/dL"), ("29463-7", 20, 60, "kg"))
    assert (_kidney(*computed).kind, _kidney(*computed).value) == ("CrCl", 39)
    assert _kidney(*computed, ("35591-7", 10, 25, "mL/min")).value == 25      # reported, newer
    assert _kidney(*computed, ("2164-2", 20, 25, "mL/min")).value == 25       # same day: the lab's
    assert _kidney(*computed, ("35591-7", 60, 25, "mL/min")).value == 39      # computed, newer
    assert _kidney(("35591-7", 20, 0.5, "mL/s")).value == 30                  # mL/s x 60
    newer_egfr = _kidney(("35591-7", 60, 25, "mL/min"), ("98979-8", 20, 45, "mL/min/{1.73_m2}"))
    assert newer_egfr.kind == "eGFR" and newer_egfr.value == 45               # the latest value counts


# ---------------------------------------------------------------------------
# 5. Risk-factor and fall codes: SNOMED CT 110483000 "Tobacco user" is tobacco use (USPSTF25
# screening risk factor); 217082002 "Accidental fall" is a fall; 129839007 "At risk for falls" is
# a positive fall-risk screen (condition-fall-risk), never a fall (second-pass 5).
# ---------------------------------------------------------------------------

def test_a_tobacco_user_under_65_is_offered_screening(client):
    woman = patient(age=58)
    got = cards(client, woman, cond("110483000", "Tobacco user (finding)", t.SNOMED))
    assert "C-SCREEN-DXA" in got and "Current smoker" in got["C-SCREEN-DXA"]["detail"]
    assert "C-SCREEN-DXA" not in cards(client, woman)  # control: no risk factor at 58


def test_z87_81_history_of_traumatic_fracture_is_not_a_screening_risk_factor(client):
    """Control (left out on purpose): the screening reads fragility fractures only; a healed
    traumatic fracture is in no fracture set (USPSTF25 risk tools have no 'any fracture' reading here)."""
    got = cards(client, patient(age=58), cond("Z87.81", "Personal history of (healed) traumatic fracture"))
    assert "C-SCREEN-DXA" not in got


@pytest.mark.parametrize("code, display", [("217082002", "Accidental fall (event)"), ("161898004", "Falls (finding)")])
def test_an_accidental_fall_is_a_fall(client, code, display):
    """A woman of 60 with a normal DXA and a fall 2 months ago: fall prevention (161898004: control)."""
    got = cards(client, patient(age=60), obs("38267-1", -0.5, "{T-score}", days=400), cond(code, display, t.SNOMED))
    assert "C-FALLS" in got and f"History of falling on record ({code}" in got["C-FALLS"]["detail"]


def _at_risk(status="active"):
    c = cond("129839007", "At risk for falls (finding)", t.SNOMED)
    c["clinicalStatus"]["coding"][0]["code"] = status
    return c


def test_at_risk_for_falls_is_a_positive_fall_screen_not_a_fall(client):
    chart = (patient(age=70), obs("38267-1", -2.7, "{T-score}", days=60), med(ALN))
    got = cards(client, *chart, _at_risk())
    assert "Positive fall-risk assessment on" in got["C-EXERCISE"]["detail"]
    assert "History of falling" not in str(got)
    young = cards(client, patient(age=60), obs("38267-1", -0.5, "{T-score}", days=400), _at_risk())
    assert "C-FALLS" not in young  # not a fall history: no fall-prevention card at 60 by itself


def test_a_resolved_fall_risk_or_none_is_no_positive_screen(client):
    """Control: no finding, or a resolved one, says nothing about a positive screen."""
    chart = (patient(age=70), obs("38267-1", -2.7, "{T-score}", days=60), med(ALN))
    for extra in ((), (_at_risk("resolved"),)):
        assert "Positive fall-risk assessment" not in cards(client, *chart, *extra)["C-EXERCISE"]["detail"]
