"""Small builders for CDS Hooks request bodies used across the tests."""

from __future__ import annotations

import copy
import uuid

PATIENT_ID = "pat-1"
FHIR = "https://fhir.example.org/r4"


def patient(pid: str = PATIENT_ID) -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1950-03-04"}


def empty_bundle() -> dict:
    return {"resourceType": "Bundle", "type": "searchset", "entry": []}


def full_prefetch() -> dict:
    return {
        "patient": patient(),
        "observations": empty_bundle(),
        "conditions": empty_bundle(),
        "medicationRequests": empty_bundle(),
        "medicationAdministrations": empty_bundle(),
        "medicationStatements": empty_bundle(),
        "fractureFindings": empty_bundle(),
        "safetyLabs": empty_bundle(),
        "procedures": empty_bundle(),
        "serviceRequests": empty_bundle(),
        "encounters": empty_bundle(),
    }


def draft_bundle(with_medication: bool = True, with_type: bool = False) -> dict:
    draft = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }
    if with_medication:
        draft["medicationCodeableConcept"] = {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "904431",
                        "display": "Alendronic acid 70 MG Oral Tablet"}],
            "text": "Alendronic acid 70 MG Oral Tablet",
        }
    bundle = {"resourceType": "Bundle", "entry": [{"resource": draft}]}
    if with_type:
        bundle["type"] = "collection"
    return bundle


def hook_request(hook: str = "patient-view", *, prefetch: dict | None = None, fhir_server: str | None = FHIR,
                 token: str | None = None, **context) -> dict:
    ctx = {"userId": "Practitioner/COREPRACTITIONER1", "patientId": PATIENT_ID}
    if hook == "order-select":
        ctx["selections"] = ["MedicationRequest/request-123"]
        ctx["draftOrders"] = draft_bundle()
    elif hook == "order-sign":
        ctx["draftOrders"] = draft_bundle()
    ctx.update(context)
    body = {
        "hookInstance": str(uuid.uuid4()),
        "hook": hook,
        "context": ctx,
        "prefetch": copy.deepcopy(full_prefetch() if prefetch is None else prefetch),
    }
    if fhir_server:
        body["fhirServer"] = fhir_server
    if token:
        body["fhirAuthorization"] = {"access_token": token, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "cds-service"}
    return body


SERVICE_FOR = {
    "patient-view": "osteoporosis-patient-view",
    "order-select": "osteoporosis-order-select",
    "order-sign": "osteoporosis-order-sign",
}
