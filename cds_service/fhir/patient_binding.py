"""Which resources belong to the patient in context.

A CDS answer built from another patient's data is the one mistake this
service must never make, so every resource the record reads passes through
`PatientBinding.reason_to_ignore` first, whichever prefetch key (or fetched
search) it came from:

- a Patient is used only when its id is `context.patientId`;
- every other type must name that patient in its subject field (`subject`,
  or `patient` for the types that use that name). Accepted forms: the
  relative `Patient/{id}` (with or without `/_history/{v}`), an absolute
  URL ending in it (under `fhirServer` when the call names one), and a
  `urn:uuid:` that is the `fullUrl` of the context Patient in the same data;
- a resource of a type the record reads but with no subject, or with a
  reference that cannot be resolved to the context patient, is ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

# Resource type -> the element that names its patient (FHIR R4).
SUBJECT_FIELD: dict[str, str] = {
    "Observation": "subject",
    "Condition": "subject",
    "Procedure": "subject",
    "MedicationRequest": "subject",
    "MedicationAdministration": "subject",
    "MedicationStatement": "subject",
    "MedicationDispense": "subject",
    "ServiceRequest": "subject",
    "Encounter": "subject",
    "DiagnosticReport": "subject",
    "CarePlan": "subject",
    "RiskAssessment": "subject",
    "AllergyIntolerance": "patient",
    "Immunization": "patient",
    "FamilyMemberHistory": "patient",
}

# Reasons, as counted in PatientRecord.ignored and the metrics (ids only, never content).
FOREIGN_PATIENT = "foreign-patient"
NO_SUBJECT = "no-subject"
UNRESOLVED_REFERENCE = "unresolved-reference"


def _base(url: str) -> str:
    """Scheme, host and path of a server base, normalised for comparison."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


class PatientBinding:
    def __init__(self, patient_id: str, *, fhir_server: str | None = None,
                 aliases: Iterable[str] | Callable[[], Iterable[str]] = ()) -> None:
        """`aliases`: the context Patient's `urn:` fullUrls, or a function giving them, called
        when a `urn:` reference is first met (most charts have none: no search for them)."""
        self.patient_id = patient_id
        self.relative = f"Patient/{patient_id}"
        self._aliases = aliases if callable(aliases) else frozenset(aliases)
        try:
            self.server_base = _base(fhir_server) if isinstance(fhir_server, str) and fhir_server else None
        except ValueError:  # a malformed fhirServer is refused by the web layer; here it simply binds nothing absolute
            self.server_base = ""

    @property
    def aliases(self) -> frozenset[str]:
        if callable(self._aliases):
            self._aliases = frozenset(self._aliases())
        return self._aliases

    def reason_to_ignore(self, resource: Mapping[str, Any]) -> str | None:
        """None when the resource is this patient's; otherwise why it is ignored."""
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            return None if resource.get("id") == self.patient_id else FOREIGN_PATIENT
        field = SUBJECT_FIELD.get(rtype)  # type: ignore[arg-type]
        if field is None:
            return None  # a type the record does not read: nothing to bind
        ref = resource.get(field)
        target = ref.get("reference") if isinstance(ref, dict) else None
        if target == self.relative:
            return None  # the usual "Patient/<id>", answered without the checks below
        if not isinstance(target, str) or not target.strip():
            return NO_SUBJECT
        return self._reference_reason(target.strip())

    def _reference_reason(self, target: str) -> str | None:
        if target == self.relative or target.startswith(self.relative + "/_history/"):
            return None
        if target.startswith("urn:"):
            return None if target in self.aliases else UNRESOLVED_REFERENCE
        if target[:8].lower().startswith(("http://", "https://")):
            try:
                parts = urlsplit(target)
            except ValueError:
                return UNRESOLVED_REFERENCE
            path = parts.path
            marker = "/" + self.relative
            cut = path.find(marker + "/_history/")
            if cut < 0 and path.endswith(marker):
                cut = len(path) - len(marker)
            if cut < 0 or parts.query or parts.fragment:
                return FOREIGN_PATIENT
            if self.server_base is not None:
                base = f"{parts.scheme.lower()}://{parts.netloc.lower()}{path[:cut].rstrip('/')}"
                if base != self.server_base:
                    return FOREIGN_PATIENT  # the same id on another server is another patient
            return None
        return FOREIGN_PATIENT


def patient_aliases(entries: Iterable[tuple[Any, Any]], patient_id: str) -> set[str]:
    """`urn:` fullUrls under which the context Patient appears: (fullUrl, resource) pairs."""
    return {url for url, res in entries
            if isinstance(url, str) and url.startswith("urn:") and isinstance(res, dict)
            and res.get("resourceType") == "Patient" and res.get("id") == patient_id}
