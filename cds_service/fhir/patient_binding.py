"""Which resources belong to the patient in context.

A CDS answer built from another patient's data is the one mistake this
service must never make, so every resource the record reads passes through
`PatientBinding.reason_to_ignore` first, whichever prefetch key (or fetched
search) it came from:

- a Patient is used only when its id is `context.patientId`;
- every other type must name that patient in its subject field (`subject`,
  or `patient` for the types that use that name). Accepted forms: the
  relative `Patient/{id}` or `Patient/{id}/_history/{vid}` (nothing else: no
  dot segment, no further path), an absolute URL under `fhirServer` ending in
  either (scheme and host compared case-blind, a default port :443/:80 the
  same as none), and a `urn:` that is the `fullUrl` of the context Patient in
  the Bundle the resource is in (FHIR resolves `urn:` references within their
  Bundle) and of nothing else there;
- an absolute reference to `Patient/{patientId}` when the call names no
  `fhirServer` is not bound (unresolved): there is no base to hold it to, and
  the same id on another server is another patient (prefetch references are
  relative, `Patient/{id}`); one to another id is another patient's, as is a
  `urn:` that is the `fullUrl` of a Patient with another id in its Bundle
  (one with no id is unresolved), and any other form (another type: a Group);
- a conditional reference that is exactly one `_id` search, `Patient?_id={id}`
  (relative, or absolute under `fhirServer`), names that id as `Patient/{id}`
  does and is held to the same rules (the server resolves it to that Patient or
  to none);
- a contained reference (`#p`) or any other relative conditional one
  (`Patient?identifier=x`, `Patient?_id=a,b`, `Patient?_id=a&active=true`)
  names no patient the service can tell: unresolved (an absolute URL with any
  other query is no reference to the context patient: another patient's);
- a resource whose `focus` (Observation) names anyone or anything but the
  context patient is about that, not the patient: ignored;
- a resource of a type the record reads but with no subject, or with a
  reference that cannot be resolved to the context patient, is ignored.

Draft orders are the exception (record.finish, hooks.check_draft_subjects):
one naming another patient (foreign-patient) makes the call a 400, one with no
subject or an unresolved one is judged as the context patient's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from cds_service.fhir.allowlist import DEFAULT_PORTS

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


# A FHIR id, as a version id must be too (and "." or ".." never is one: a dot segment).
_ID = re.compile(r"[A-Za-z0-9.\-]{1,64}")


def _is_id(text: str) -> bool:
    return text not in (".", "..") and _ID.fullmatch(text) is not None


SELF, OTHER = "self", "other"


def _id_search(query: str, patient_id: str) -> str | None:
    """What a conditional reference's `_id` search names (percent-encoding read, empty
    parameters ignored, `_id:exact` as `_id`, a comma list of ids as the server reads it):
    OTHER when the context patient's id is missing from an `_id` list (the search can find
    only other patients, or none: adversarial review 13 got past the 400 with `&`, `:exact`,
    a list, a second parameter); SELF when it is exactly one `_id` naming the context
    patient; None otherwise (no `_id`, a malformed id, the patient among others or beside
    another parameter): which patient it finds cannot be told without the search."""
    lists, others = [], False
    for part in query.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if name in ("_id", "_id:exact") and sep:
            ids = unquote(value).split(",")
            if not all(_is_id(i) for i in ids):
                return None
            lists.append(ids)
        else:
            others = True
    if not lists:
        return None
    if any(patient_id not in ids for ids in lists):
        return OTHER
    return SELF if len(lists) == 1 and lists[0] == [patient_id] and not others else None


def _has_dot_segment(path: str) -> bool:
    return any(unquote(part) in (".", "..") for part in path.split("/"))


def _base(url: str) -> str:
    """Scheme, host and path of a server base, normalised for comparison."""
    parts = urlsplit(url.strip())
    return _normalised(parts.scheme, parts.netloc, parts.path)


def _normalised(scheme: str, netloc: str, path: str) -> str:
    """A base URL as compared: scheme and host lowercased, the scheme's default port dropped
    (https://h:443/r4 is https://h/r4), no trailing '/'."""
    scheme, netloc = scheme.lower(), netloc.lower()
    if scheme in DEFAULT_PORTS:
        netloc = netloc.removesuffix(f":{DEFAULT_PORTS[scheme]}")
    return f"{scheme}://{netloc}{path.rstrip('/')}"


class PatientBinding:
    def __init__(self, patient_id: str, *, fhir_server: str | None = None) -> None:
        self.patient_id = patient_id
        self.relative = f"Patient/{patient_id}"
        self._history = self.relative + "/_history/"
        # The Bundle whose entries are being read (set by the record builder as it reads each Bundle), and the
        # context Patient's `urn:` aliases in it, looked for at its first `urn:` reference
        # (most charts have none: no search for them).
        self.bundle: Any = None
        self._aliases_of: tuple[Any, frozenset[str]] = (None, frozenset())
        self._others_of: tuple[Any, frozenset[str]] = (None, frozenset())
        try:
            self.server_base = _base(fhir_server) if isinstance(fhir_server, str) and fhir_server else None
        except ValueError:  # a malformed fhirServer is refused by the web layer; here it simply binds nothing absolute
            self.server_base = ""

    @property
    def aliases(self) -> frozenset[str]:
        """The context Patient's `urn:` fullUrls in the Bundle being read (none outside one)."""
        bundle, found = self._aliases_of
        if bundle is not self.bundle:
            found = frozenset(patient_aliases(bundle_entries(self.bundle), self.patient_id))
            self._aliases_of = (self.bundle, found)
        return found

    @property
    def other_patients(self) -> frozenset[str]:
        """The `urn:` fullUrls of another Patient in the Bundle being read (looked for only
        when a `urn:` reference is no alias of the context Patient)."""
        bundle, found = self._others_of
        if bundle is not self.bundle:
            # A Patient with no id (or only an identifier) cannot be told from the context patient:
            # the reference is unresolved, not another patient's.
            found = frozenset(url for url, res in bundle_entries(self.bundle)
                              if isinstance(url, str) and url.startswith("urn:") and isinstance(res, dict)
                              and res.get("resourceType") == "Patient" and isinstance(res.get("id"), str)
                              and res["id"] and res["id"] != self.patient_id)
            self._others_of = (self.bundle, found)
        return found

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
        if target != self.relative:  # the usual "Patient/<id>" needs none of the checks below
            if not isinstance(target, str) or not target.strip():
                return NO_SUBJECT
            reason = self._reference_reason(target.strip())
            if reason is not None:
                return reason
        focus = resource.get("focus")
        return self._focus_reason(focus) if focus else None

    def _focus_reason(self, focus: Any) -> str | None:
        """An Observation's focus is what it is about when that is not its subject: all of
        it must be this patient, else the observation is someone's (or something's) else."""
        for item in focus if isinstance(focus, list) else (focus,):
            target = item.get("reference") if isinstance(item, dict) else None
            if not isinstance(target, str) or self._reference_reason(target.strip()) is not None:
                return FOREIGN_PATIENT
        return None

    def reference_reason(self, target: str) -> str | None:
        """None when the reference `target` names this patient; otherwise why not."""
        return self._reference_reason(target)

    def _reference_reason(self, target: str) -> str | None:
        if target == self.relative:
            return None
        if target.startswith(self._history):
            return None if _is_id(target[len(self._history):]) else FOREIGN_PATIENT
        if target.startswith("urn:"):
            if target in self.aliases:
                return None
            return FOREIGN_PATIENT if target in self.other_patients else UNRESOLVED_REFERENCE
        if target[:8].lower().startswith(("http://", "https://")):
            try:
                parts = urlsplit(target)
            except ValueError:
                return UNRESOLVED_REFERENCE
            path, query = parts.path, parts.query
            if query and path.endswith("/Patient") and (found := _id_search(query, self.patient_id)) is not None:
                if found == OTHER:
                    return FOREIGN_PATIENT
                path, query = f"{path}/{self.patient_id}", ""  # <base>/Patient?_id=x is <base>/Patient/x
            if query or parts.fragment or _has_dot_segment(path):
                return FOREIGN_PATIENT
            marker = "/" + self.relative
            cut = path.find(marker + "/_history/")
            if cut >= 0:
                if not _is_id(path[cut + len(marker) + len("/_history/"):]):
                    return FOREIGN_PATIENT
            elif path.endswith(marker):
                cut = len(path) - len(marker)
            else:
                return FOREIGN_PATIENT
            if self.server_base is None:
                return UNRESOLVED_REFERENCE  # no fhirServer: no base to hold it to
            if _normalised(parts.scheme, parts.netloc, path[:cut]) != self.server_base:
                return FOREIGN_PATIENT  # the same id on another server is another patient
            return None
        if target.startswith("Patient?"):
            query, fragment = target[len("Patient?"):].partition("#")[::2]
            found = _id_search(query, self.patient_id)
            if found == OTHER:  # Patient?_id=x is Patient/x
                return FOREIGN_PATIENT
            if found == SELF and not fragment:
                return None
        if target.startswith("#") or target.startswith("Patient?"):
            # A contained resource ("#p": its id is local to the resource, no patient's) or
            # another conditional reference ("Patient?identifier=x", resolved by a search the
            # service does not make): which patient it names cannot be told. Not another patient's.
            return UNRESOLVED_REFERENCE
        return FOREIGN_PATIENT  # another patient's id, another type (a Group), or a path made into one


def bundle_entries(bundle: Any) -> list[tuple[Any, Any]]:
    """The (fullUrl, resource) pairs of a Bundle's own entries (not those of a Bundle
    within it, which resolve in theirs); [] for anything but a Bundle. Entries kept as
    text (fhir.deferred) are left out: they hold no `urn:` fullUrl."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return []
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return []
    return [(entry.get("fullUrl"), entry.get("resource")) for entry in entries if isinstance(entry, dict)]


def patient_aliases(entries: Iterable[tuple[Any, Any]], patient_id: str) -> set[str]:
    """`urn:` fullUrls that name the context Patient, and nothing else, among one Bundle's
    (fullUrl, resource) pairs. A fullUrl given to the patient and to another resource
    (another patient, say) is no alias: which one a reference means cannot be told."""
    patient, other = set(), set()
    for url, res in entries:
        if isinstance(url, str) and url.startswith("urn:") and res is not None:
            if isinstance(res, dict) and res.get("resourceType") == "Patient" and res.get("id") == patient_id:
                patient.add(url)
            else:
                other.add(url)
    return patient - other
