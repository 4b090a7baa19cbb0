"""Prefetch templates shared by the three services.

They ask for exactly what the rules read: the Patient; DXA, FRAX, lab,
smoking and fall-risk Observations by LOINC code; Conditions; bone-drug and
supplement exposure (MedicationRequest, MedicationAdministration,
MedicationStatement); DXA and bariatric Procedures by code. The user
Practitioner is not asked for: no rule needs it.

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
    "conditions": f"Condition?patient={PATIENT}&{COUNT}",
    "medicationRequests": f"MedicationRequest?patient={PATIENT}&{COUNT}",
    "medicationAdministrations": f"MedicationAdministration?patient={PATIENT}&{COUNT}",
    "medicationStatements": f"MedicationStatement?patient={PATIENT}&{COUNT}",
    # Fractures recorded as findings (Observation.code is the fracture).
    "fractureFindings": f"Observation?patient={PATIENT}&code={_codes(t.SNOMED, t.SNOMED_FRACTURE_CODES)}&{COUNT}",
    "procedures": (
        f"Procedure?patient={PATIENT}&code="
        f"{_codes(t.CPT, t.DXA_CPT_CODES)},{_codes(t.SNOMED, t.DXA_SNOMED_CODES | t.BARIATRIC_SNOMED_CODES)}"
        f"&{COUNT}"
    ),
}

# Without these the rules would decide on a false picture (e.g. "no bone drug"
# when the drugs simply could not be read), so their absence is a 412.
# MedicationStatement and Procedure searches, and fracture findings, are not
# supported by every FHIR server; when they fail the rules go on with what
# the other keys give.
REQUIRED: frozenset[str] = frozenset(
    {"patient", "observations", "conditions", "medicationRequests", "medicationAdministrations"}
)
