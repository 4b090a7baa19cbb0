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
