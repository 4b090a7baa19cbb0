"""Synthetic patient-view requests with N prefetched resources, for benchmarks.

The mix follows what an EHR sends for an older woman with a long chart:
mostly lab and DXA/FRAX Observations (the prefetch asks for them by LOINC
code; creatinine, weight and BMI under safetyLabs), then Conditions (the prefetch asks for all of them, so most are not
about bone), MedicationRequests, MedicationAdministrations and a few DXA
Procedures. Codes come from cds_service.fhir.terminology; the unrelated
conditions and drugs use common real ICD-10-CM / RxNorm codes. Resources are
shaped like a FHIR server's search results (fullUrl, search mode, meta,
category, subject, displays), so the body size per resource is realistic
(about 0.6-1 kB).

The patient is a 72-year-old woman with osteoporosis, untreated for years and
without current calcium or vitamin D, so the current rules answer with cards
(the cost of rendering and checking suggested orders is part of the measure).

Deterministic: the same (n, seed, today) gives the same request. PATIENT_ID
appears in context.patientId, the Patient and every subject reference; the
benchmark swaps it per call (see run.py) so caches keyed on the patient
cannot flatter the numbers.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

from cds_service.fhir import terminology as t

PATIENT_ID = "bench-patient-1"
FHIR_BASE = "https://fhir.example.org/r4"

# Share of the non-Patient resources by prefetch key (sums to 1).
MIX = {
    "observations": 0.45,
    "safetyLabs": 0.10,
    "conditions": 0.15,
    "medicationRequests": 0.17,
    "medicationAdministrations": 0.08,
    "procedures": 0.05,
}

# (code, display, unit, low, high) for lab Observations.
LABS = [
    ("62238-1", "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, Plasma or Blood by Creatinine-based formula (CKD-EPI)", "mL/min/{1.73_m2}", 48, 95),
    ("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.2, 10.6),
    ("1751-7", "Albumin [Mass/volume] in Serum or Plasma", "g/dL", 3.2, 4.8),
    ("62292-8", "25-Hydroxyvitamin D2+D3 [Mass/volume] in Serum or Plasma", "ng/mL", 12, 48),
    ("2731-8", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "pg/mL", 15, 80),
]
# (code, display, unit, low, high) for the safetyLabs key: creatinine, weight, BMI.
SAFETY_LABS = [
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.3),
    ("29463-7", "Body weight", "kg", 52, 78),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 19, 29),
]
T_SITES = [("38267-1", "DXA Lumbar spine [T-score] Bone density"),
           ("38263-0", "DXA Femur [T-score] Bone density"),
           ("38264-8", "DXA Hip [T-score] Bone density")]
# Conditions: a few about bone, most not (a real problem list).
BONE_CONDITIONS = [
    (t.ICD10CM, "M81.0", "Age-related osteoporosis without current pathological fracture"),
    (t.ICD10CM, "M85.80", "Other specified disorders of bone density and structure, unspecified site"),
    (t.ICD10CM, "Z87.310", "Personal history of (healed) osteoporosis fracture"),
    (t.ICD10CM, "N18.3", "Chronic kidney disease, stage 3 (moderate)"),
    (t.SNOMED, "161898004", "Falls"),
]
OTHER_CONDITIONS = [
    (t.ICD10CM, "I10", "Essential (primary) hypertension"),
    (t.ICD10CM, "E11.9", "Type 2 diabetes mellitus without complications"),
    (t.ICD10CM, "E78.5", "Hyperlipidemia, unspecified"),
    (t.ICD10CM, "J45.909", "Unspecified asthma, uncomplicated"),
    (t.ICD10CM, "M17.11", "Unilateral primary osteoarthritis, right knee"),
    (t.ICD10CM, "K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    (t.SNOMED, "44054006", "Diabetes mellitus type 2"),
    (t.SNOMED, "38341003", "Hypertensive disorder"),
]
# (rxnorm, display, status choices)
MED_REQUESTS = [
    ("904431", "alendronic acid 70 MG Oral Tablet", ("stopped", "entered-in-error")),
    ("282465", "calcium carbonate 1250 MG Oral Tablet", ("completed", "stopped")),
    ("245500", "cholecalciferol 1000 UNT Oral Capsule", ("completed", "stopped")),
    ("314076", "lisinopril 10 MG Oral Tablet", ("active", "completed")),
    ("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet", ("active", "completed")),
    ("617312", "atorvastatin 10 MG Oral Tablet", ("active", "stopped")),
    ("", "omeprazole 20 MG Delayed Release Oral Capsule", ("active", "completed")),
]
MED_ADMINS = [
    ("993452", "denosumab 60 MG/ML Prefilled Syringe"),
    ("705824", "zoledronic acid 5 MG per 100 ML Injection"),
    ("", "influenza vaccine 0.5 ML Injection"),
]


def _split(n: int) -> dict[str, int]:
    """Resource counts per key adding up to exactly n (largest remainder)."""
    raw = {k: n * share for k, share in MIX.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for key in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[key] += 1
    return counts


class _Maker:
    def __init__(self, seed: int, today: dt.date) -> None:
        self.rng = random.Random(seed)
        self.today = today
        self.serial = 0

    def day(self, max_years: float = 12, min_years: float = 0) -> str:
        days = self.rng.randint(int(365 * min_years) + 1, int(365 * max_years))
        return (self.today - dt.timedelta(days=days)).isoformat()

    def next_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def base(self, rtype: str, prefix: str) -> dict[str, Any]:
        rid = self.next_id(prefix)
        return {
            "resourceType": rtype,
            "id": rid,
            "meta": {"versionId": "1", "lastUpdated": f"{self.day(3)}T09:{self.rng.randint(10, 59)}:00Z"},
        }

    def observation(self, i: int) -> dict[str, Any]:
        res = self.base("Observation", "obs")
        kind = i % 10
        when = self.day()
        if kind in (0, 1):  # DXA T-score
            code, display = T_SITES[i % 3]
            value = {"value": round(self.rng.uniform(-3.4, 0.5), 1), "unit": "{T-score}",
                     "system": t.UCUM, "code": "{T-score}"}
            category = "imaging"
        elif kind == 2:  # FRAX
            code = t.FRAX_MOF if i % 2 else t.FRAX_HIP
            display = ("10-year probability of major osteoporotic fracture [FRAX]" if code == t.FRAX_MOF
                       else "10-year probability of hip fracture [FRAX]")
            value = {"value": round(self.rng.uniform(1, 35 if code == t.FRAX_MOF else 6), 1), "unit": "%",
                     "system": t.UCUM, "code": "%"}
            category = "survey"
        else:  # labs
            code, display, unit, low, high = LABS[i % len(LABS)]
            value = {"value": round(self.rng.uniform(low, high), 1), "unit": unit, "system": t.UCUM, "code": unit}
            category = "laboratory"
        res.update({
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": category}]}],
            "code": {"coding": [{"system": t.LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "effectiveDateTime": f"{when}T10:30:00Z",
            "issued": f"{when}T14:02:11.000Z",
            "valueQuantity": value,
        })
        return res

    def safety_lab(self, i: int) -> dict[str, Any]:
        res = self.base("Observation", "lab")
        code, display, unit, low, high = SAFETY_LABS[i % len(SAFETY_LABS)]
        when = self.day()
        res.update({
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "laboratory" if code == "2160-0" else "vital-signs"}]}],
            "code": {"coding": [{"system": t.LOINC, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "effectiveDateTime": f"{when}T10:30:00Z",
            "issued": f"{when}T14:02:11.000Z",
            "valueQuantity": {"value": round(self.rng.uniform(low, high), 1), "unit": unit, "system": t.UCUM,
                              "code": unit},
        })
        return res

    def condition(self, i: int) -> dict[str, Any]:
        res = self.base("Condition", "cond")
        pool = BONE_CONDITIONS if i % 4 == 0 else OTHER_CONDITIONS
        system, code, display = pool[(i // 4 if pool is BONE_CONDITIONS else i) % len(pool)]
        active = self.rng.random() < 0.7
        res.update({
            "clinicalStatus": {"coding": [{"system": t.CONDITION_CLINICAL,
                                           "code": "active" if active else "resolved"}]},
            "verificationStatus": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "problem-list-item"}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": display},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "onsetDateTime": self.day(),
            "recordedDate": self.day(),
        })
        return res

    @staticmethod
    def _med(rxnorm: str, display: str) -> dict[str, Any]:
        concept: dict[str, Any] = {"text": display}
        if rxnorm:
            concept["coding"] = [{"system": t.RXNORM, "code": rxnorm, "display": display}]
        return concept

    def medication_request(self, i: int) -> dict[str, Any]:
        res = self.base("MedicationRequest", "medrx")
        rxnorm, display, statuses = MED_REQUESTS[i % len(MED_REQUESTS)]
        start = self.day(8)
        res.update({
            "status": statuses[self.rng.randrange(len(statuses))],
            "intent": "order",
            "medicationCodeableConcept": self._med(rxnorm, display),
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "authoredOn": start,
            "requester": {"reference": "Practitioner/prac-1", "display": "Dr. Example"},
            "dosageInstruction": [{"text": "Take as directed", "timing": {"repeat": {
                "frequency": 1, "period": 1, "periodUnit": "wk" if i % len(MED_REQUESTS) == 0 else "d"}}}],
            "dispenseRequest": {"numberOfRepeatsAllowed": 3,
                                "expectedSupplyDuration": {"value": 90, "unit": "days", "system": t.UCUM,
                                                           "code": "d"}},
        })
        return res

    def medication_administration(self, i: int) -> dict[str, Any]:
        res = self.base("MedicationAdministration", "medadm")
        rxnorm, display = MED_ADMINS[i % len(MED_ADMINS)]
        res.update({
            "status": "completed",
            "medicationCodeableConcept": self._med(rxnorm, display),
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            # Bone-drug doses years ago: the patient is untreated now, as many are.
            "effectiveDateTime": f"{self.day(10, min_years=4)}T11:00:00Z",
            "performer": [{"actor": {"reference": "Practitioner/prac-2"}}],
            "dosage": {"route": {"coding": [{"system": t.SNOMED, "code": "34206005", "display": "Subcutaneous route"}]}},
        })
        return res

    def procedure(self, i: int) -> dict[str, Any]:
        res = self.base("Procedure", "proc")
        res.update({
            "status": "completed",
            "code": {"coding": [{"system": t.CPT, "code": "77080",
                                 "display": "Dual-energy X-ray absorptiometry (DXA), bone density study, axial skeleton"}]},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "performedDateTime": self.day(),
        })
        return res


_MAKERS = {
    "observations": _Maker.observation,
    "safetyLabs": _Maker.safety_lab,
    "conditions": _Maker.condition,
    "medicationRequests": _Maker.medication_request,
    "medicationAdministrations": _Maker.medication_administration,
    "procedures": _Maker.procedure,
}


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.UUID(int=len(resources) + 1)),
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": f"{FHIR_BASE}/search"}],
        "entry": [{"fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}", "resource": r,
                   "search": {"mode": "match"}} for r in resources],
    }


def patient_view_request(n: int, *, seed: int = 1, today: dt.date | None = None) -> dict[str, Any]:
    """A full patient-view request whose prefetch holds n resources besides the
    Patient (n >= 0), spread over the keys by MIX."""
    today = today or dt.date.today()
    maker = _Maker(seed, today)
    prefetch: dict[str, Any] = {
        "patient": {
            "resourceType": "Patient", "id": PATIENT_ID, "active": True,
            "name": [{"use": "official", "family": "Example", "given": ["Bench"]}],
            "gender": "female", "birthDate": (today - dt.timedelta(days=int(72 * 365.25))).isoformat(),
        },
    }
    for key, count in _split(n).items():
        make = _MAKERS[key]
        prefetch[key] = _bundle([make(maker, i) for i in range(count)])
    # Keys the EHR searched and found nothing for: every key the service asks
    # for is answered, as an EHR does (a missing one would be fetched or logged).
    for key in ("medicationStatements", "fractureFindings", "serviceRequests", "encounters"):
        prefetch[key] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.UUID(int=seed * 1_000_003 + n)),
        "fhirServer": FHIR_BASE,
        "context": {"userId": "Practitioner/prac-1", "patientId": PATIENT_ID},
        "prefetch": prefetch,
    }


def resource_count(body: dict[str, Any]) -> int:
    """Resources in the prefetch other than the Patient."""
    return sum(len(v.get("entry") or []) for k, v in body["prefetch"].items()
               if isinstance(v, dict) and v.get("resourceType") == "Bundle")
