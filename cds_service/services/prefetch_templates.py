"""Prefetch templates shared by the three services.

They ask for exactly what the rules read: the Patient; DXA, FRAX, lab,
smoking and fall-risk Observations by LOINC code (creatinine, weight, BMI, ALP
and pregnancy tests under a key of their own); Conditions; bone-drug and supplement exposure
(MedicationRequest, MedicationAdministration, MedicationStatement); the
patient's Procedures (DXA, bariatric surgery, dialysis, recent operations);
and the care already arranged that keeps an info card quiet (second-pass 7):
ServiceRequests (PT, exercise, occupational-therapy, fall-risk, smoking-cessation,
dietitian and DXA orders) and PT, exercise or occupational-therapy visits.
The user Practitioner is not asked for: no rule needs it.

Every search is keyed on the context patient and asks for PAGE_SIZE results
a page (`_count`): servers default to 10-50, and a long chart would otherwise
need dozens of pages (the service follows `next` links up to
CDS_FHIR_MAX_PAGES; a server may still cap `_count` lower).
"""

from __future__ import annotations

from cds_service.fhir import terminology as t


def _codes(system: str, codes) -> str:
    return ",".join(f"{system}|{code}" for code in sorted(codes))


PATIENT = "{{context.patientId}}"
PAGE_SIZE = 100
COUNT = f"_count={PAGE_SIZE}"

PREFETCH: dict[str, str] = {
    "patient": f"Patient/{PATIENT}",
    "observations": f"Observation?patient={PATIENT}&code={_codes(t.LOINC, t.OBSERVATION_CODES)}&{COUNT}",
    # creatinine, weight, BMI, ALP, pregnancy tests (a key of its own: URL length, see terminology)
    "safetyLabs": f"Observation?patient={PATIENT}&code={_codes(t.LOINC, t.SAFETY_LAB_CODES)}&{COUNT}",
    "conditions": f"Condition?patient={PATIENT}&{COUNT}",
    "medicationRequests": f"MedicationRequest?patient={PATIENT}&{COUNT}",
    "medicationAdministrations": f"MedicationAdministration?patient={PATIENT}&{COUNT}",
    "medicationStatements": f"MedicationStatement?patient={PATIENT}&{COUNT}",
    # Fractures recorded as findings (Observation.code is the fracture).
    "fractureFindings": f"Observation?patient={PATIENT}&code={_codes(t.SNOMED, t.SNOMED_FRACTURE_CODES)}&{COUNT}",
    # Every Procedure: besides DXA and bariatric surgery the rules read dialysis (kidney
    # reading) and any recent operation (massage safety), and operations have no short code list.
    "procedures": f"Procedure?patient={PATIENT}&{COUNT}",
    # Care already arranged (second-pass 7): every order of the patient (few, and referrals
    # are often coded by text only), and only the visits of the kinds that count: a chart
    # holds hundreds of encounters, almost none of them therapy.
    "serviceRequests": f"ServiceRequest?patient={PATIENT}&{COUNT}",
    "encounters": f"Encounter?patient={PATIENT}&type={','.join(t.visit_type_codes())}&{COUNT}",
}

# Without these the rules would decide on a false picture (e.g. "no bone drug"
# when the drugs simply could not be read), so their absence is a 412.
# MedicationStatement and Procedure searches, and fracture findings, are not
# supported by every FHIR server; when they fail the rules go on with what
# the other keys give.
REQUIRED: frozenset[str] = frozenset(
    {"patient", "observations", "conditions", "medicationRequests", "medicationAdministrations"}
)
