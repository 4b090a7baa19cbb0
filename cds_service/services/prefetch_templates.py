"""Prefetch templates shared by the three services, generated from the value sets.

They ask for exactly what the rules read: the Patient; the Observations the
reader reads by code (record.OBSERVATION_SETS: DXA, FRAX, labs, smoking and
fall-risk; creatinine, weight, BMI, ALP, pregnancy tests and the
secondary-cause tests under a key of their own; fracture findings under a
third); Conditions; bone-drug and supplement exposure (MedicationRequest,
MedicationAdministration, MedicationStatement); the patient's Procedures (DXA, bariatric surgery,
dialysis, recent operations); and the care already arranged that keeps an
info card quiet (second-pass 7): ServiceRequests (PT, exercise,
occupational-therapy, fall-risk, smoking-cessation, dietitian and DXA orders)
and PT, exercise or occupational-therapy visits. The user Practitioner is not
asked for: no rule needs it.

The codes come from the active value sets, the same the reader uses, so query
and reader cannot disagree; a site's extra value sets (CDS_EXTRA_VALUESETS_DIR)
add their codes to the queries too, which changes the discovery document: an
EHR that caches it must read it again after the site adds codes. ICD-10-CM
codes are not asked for in Observation queries: they are diagnoses (every
Condition is asked for), and their "code and everything under it" roots
cannot be written as a search. The fracture findings key names its SNOMED CT
codes without their system (about 290 codes: with the system the URL would
pass 8 KiB, a common server limit; without it, 3 kB); a code of another
system that a server returns for it is dropped unread, since the reader
matches system and code.

Every search is keyed on the context patient and asks for PAGE_SIZE results
a page (`_count`): servers default to 10-50, and a long chart would otherwise
need dozens of pages (the service follows `next` links up to
CDS_FHIR_MAX_PAGES; a server may still cap `_count` lower).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from urllib.parse import quote

from cds_service.fhir import terminology as t
from cds_service.fhir import valuesets
from cds_service.fhir.valuesets import CPT, ICD10CM, SNOMED, Terminology
from cds_service.record import FRACTURE_SETS, OBSERVATION_SETS

PATIENT = "{{context.patientId}}"
PAGE_SIZE = 100
COUNT = f"_count={PAGE_SIZE}"

# Observation searches by code: prefetch key -> the value sets (ids or id prefixes) it asks
# for. Each set the reader reads by code is in exactly one key (tests check it). Three keys,
# not one: a single query with every code would be a URL most servers refuse.
OBSERVATION_KEYS: dict[str, tuple[str, ...]] = {
    "observations": ("dxa-", "frax-", "lab-egfr", "lab-calcium-total", "lab-calcium-corrected", "lab-albumin",
                     "lab-vitamin-d-25oh", "lab-pth", "obs-smoking-status", "obs-fall-risk-assessment",
                     "obs-fes-i", "obs-short-fes-i"),
    # creatinine, weight, BMI, ALP, pregnancy tests (second pass); the secondary-cause tests
    # C-SECONDARY-EVAL leaves out when on record (record.TEST_DONE_SETS); 1,25-dihydroxyvitamin D,
    # which the CKD-MBD work-up leaves out when recent (review 14)
    "safetyLabs": ("lab-creatinine", "lab-calcium-ionized", "obs-body-weight", "obs-bmi", "lab-alp", "lab-hcg-", "obs-pregnancy-status",
                   "lab-phosphate", "lab-tsh", "lab-blood-count", "lab-protein-electrophoresis", "lab-celiac-ttg-iga",
                   "lab-urine-calcium-24h", "lab-testosterone", "lab-calcitriol"),
    # Fractures recorded as findings (Observation.code is the fracture).
    "fractureFindings": (FRACTURE_SETS,),
}
BARE_SNOMED_KEYS = frozenset({"fractureFindings"})  # SNOMED CT codes written without their system

# Without these the rules would decide on a false picture (e.g. "no bone drug"
# when the drugs simply could not be read), so their absence is a 412:
# `safetyLabs` holds what critical safety cards decide on (hCG and pregnancy
# status for C-SAFE-PREGNANCY; creatinine and weight for the Cockcroft-Gault
# clearance of C-SAFE-RENAL), on every hook.
# MedicationStatement searches and fracture findings are not supported by every
# FHIR server; when they fail the rules go on with what the other keys give.
REQUIRED: frozenset[str] = frozenset(
    {"patient", "observations", "safetyLabs", "conditions", "medicationRequests", "medicationAdministrations"}
)
# On the order hooks `procedures` too: a dialysis Procedure makes C-SAFE-RENAL (zoledronic
# acid) and C-SAFE-DMAB-CKD critical for the drug being ordered now. On patient-view it
# stays optional: Procedure search is not supported by every FHIR server, and a chart
# open with it missing would otherwise be a 412 on every open; what it decides there (an
# active zoledronic acid, or a denosumab dose due, on dialysis known only by a Procedure) is judged again, with
# procedures required, when the next dose is ordered.
REQUIRED_ON_ORDERS: frozenset[str] = REQUIRED | {"procedures"}


def observation_sets(key: str, terminology: Terminology) -> tuple[str, ...]:
    """The value sets an Observation key asks for: those of its prefixes the reader reads."""
    return tuple(vs for vs in terminology.ids() if vs.startswith(OBSERVATION_KEYS[key])
                 and vs.startswith((*OBSERVATION_SETS, FRACTURE_SETS)))


def search_codes(key: str, terminology: Terminology) -> tuple[str, ...]:
    """`system|code` tokens of an Observation key, sorted (ICD-10-CM left out, see above;
    SNOMED CT bare in BARE_SNOMED_KEYS)."""
    bare = SNOMED if key in BARE_SNOMED_KEYS else None
    tokens = {_token(code) if system == bare else f"{_token(system)}|{_token(code)}"
              for vs in observation_sets(key, terminology)
              for system, codes in terminology.concept(vs).codes.items() if system != ICD10CM
              for code in codes}
    return tuple(sorted(tokens))


def _token(value: str) -> str:
    # Site code systems and codes may hold characters a query must escape; the
    # separators of a token search (",", "|") are escaped inside a value too.
    return quote(value, safe=":/.-_~")


def templates(terminology: Terminology) -> dict[str, str]:
    def by_code(key: str) -> str:
        return f"Observation?patient={PATIENT}&code={','.join(search_codes(key, terminology))}&{COUNT}"

    return {
        "patient": f"Patient/{PATIENT}",
        "observations": by_code("observations"),
        "safetyLabs": by_code("safetyLabs"),
        "conditions": f"Condition?patient={PATIENT}&{COUNT}",
        "medicationRequests": f"MedicationRequest?patient={PATIENT}&{COUNT}",
        "medicationAdministrations": f"MedicationAdministration?patient={PATIENT}&{COUNT}",
        "medicationStatements": f"MedicationStatement?patient={PATIENT}&{COUNT}",
        "fractureFindings": by_code("fractureFindings"),
        # Every Procedure: besides DXA and bariatric surgery the rules read dialysis (kidney
        # reading) and any recent operation (massage safety), and operations have no short code list.
        "procedures": f"Procedure?patient={PATIENT}&{COUNT}",
        # Care already arranged (second-pass 7): every order of the patient (few, and referrals
        # are often coded by text only), and only the visits of the kinds that count: a chart
        # holds hundreds of encounters, almost none of them therapy.
        "serviceRequests": f"ServiceRequest?patient={PATIENT}&{COUNT}",
        "encounters": f"Encounter?patient={PATIENT}&type={','.join(visit_tokens(terminology))}&{COUNT}",
    }


def visit_tokens(terminology: Terminology) -> tuple[str, ...]:
    """`system|code` of the visit kinds (SNOMED CT and CPT: what Encounter.type carries)."""
    return tuple(sorted(f"{_token(system)}|{_token(code)}" for kind in t.VISIT_CARE_KINDS
                        for system in (SNOMED, CPT) for code in terminology.codes(kind, system)))


class _ActiveTemplates(Mapping[str, str]):
    """The templates of the active value sets (rebuilt when create_app configures a site's)."""

    def __init__(self) -> None:
        self._for: tuple[Terminology, dict[str, str]] | None = None

    def _current(self) -> dict[str, str]:
        terminology = valuesets.active()
        cached = self._for
        if cached is None or cached[0] is not terminology:
            cached = self._for = (terminology, templates(terminology))
        return cached[1]

    def __getitem__(self, key: str) -> str:
        return self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


PREFETCH: Mapping[str, str] = _ActiveTemplates()
