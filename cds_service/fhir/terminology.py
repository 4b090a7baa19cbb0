"""What the codes mean: every code list is read from the value-set files.

The codes live in cds_service/terminology_data/valuesets/ (one FHIR ValueSet
per concept, marked V / V? / U and sourced; cds_service/terminology_data/README.md),
loaded once with a site's extra files merged in (fhir/valuesets.py,
CDS_EXTRA_VALUESETS_DIR). This module answers the reader's and the rules'
questions from them: the condition groups of a diagnosis, the site and
fragility status of a fracture code, the drug agents of a medication, the kind
of an order. What stays in Python is rule logic, never a code: drug classes,
dosing intervals and labels, how each fracture site counts, the words that
make a drug non-systemic or a procedure not an operation, glucocorticoid dose
equivalents.

Everything derived from the value sets is rebuilt when the active value sets
change (create_app configures them), so a site's codes reach every question.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.fhir import valuesets
from cds_service.fhir.valuesets import CPT, ICD10CM, LOINC, NUCC, RXNORM, SNOMED, UCUM, Terminology

__all__ = ["CPT", "ICD10CM", "LOINC", "NUCC", "RXNORM", "SNOMED", "UCUM"]

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


def terms() -> Terminology:
    """The active value sets (shipped + the site's)."""
    return valuesets.active()


# ---------------------------------------------------------------------------
# Reading CodeableConcepts
# ---------------------------------------------------------------------------

def codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept dict, the system under the value sets' URI
    (valuesets.SYSTEM_ALIASES: ICD-10-CM sent as its OID is ICD-10-CM); tolerant of junk."""
    if not isinstance(concept, dict):
        return []
    out = []
    known = valuesets.SYSTEM_OF  # the usual systems in one look-up; other spellings after a miss
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            system = str(coding.get("system") or "")
            out.append((known.get(system) or valuesets.other_spelling(system), coding["code"].strip()))
    return out


def concept_text(concept: Any) -> str:
    """Lower-cased text + coding displays, for name fallback matching."""
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text")]
    parts += [c.get("display") for c in concept.get("coding") or () if isinstance(c, dict)]
    return " | ".join(p for p in parts if isinstance(p, str)).lower()


def concepts_of(concept: Any) -> frozenset[str]:
    """Value-set ids of every coding of a CodeableConcept (codes only; one dict read each)."""
    return terms().concepts_in(concept)


_NAME_PATTERNS: dict[str, re.Pattern[str]] = {}


def name_in(name: str, text: str) -> bool:
    """Whole-word, case-insensitive name match on lower-cased `text`. A name
    ending in "*" is a stem ("alendron*" matches alendronate and alendronic)."""
    pattern = _NAME_PATTERNS.get(name)
    if pattern is None:
        stem = name.endswith("*")
        body = re.escape(name.rstrip("*"))
        pattern = re.compile(r"(?<![a-z0-9])" + body + ("" if stem else r"(?![a-z0-9])"))
        _NAME_PATTERNS[name] = pattern
    return pattern.search(text) is not None


def any_name_in(names: Iterable[str], text: str) -> bool:
    return bool(text) and _names_pattern(tuple(names)).search(text) is not None


@functools.lru_cache(maxsize=256)
def _names_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """One regex for a list of names, same matching as name_in on each: one
    search per concept instead of one per name (hot on long charts)."""
    alternatives = [re.escape(n.rstrip("*")) + ("" if n.endswith("*") else r"(?![a-z0-9])") for n in names]
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(alternatives or [r"(?!)"]) + ")")


def codes_in(concept: Any, system: str) -> list[str]:
    return [code for sys, code in codings(concept) if sys == system]


def icd_codes(concept: Any) -> list[str]:
    """ICD-10-CM codes of a concept, dot removed, upper case."""
    return [valuesets.normalise(ICD10CM, c) for c in codes_in(concept, ICD10CM)]


def icd_display(code: str) -> str:
    """Normalised ICD-10-CM code back in its dotted form (M8008XA -> M80.08XA)."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def shown_code(system: str, code: str) -> str:
    """A code as card facts print it (ICD-10-CM with its dot)."""
    return icd_display(valuesets.normalise(ICD10CM, code)) if system == ICD10CM else code


def names_in(value_set: str, text: str) -> bool:
    """Does lower-cased free text hold one of the value set's text-match names?"""
    names = terms().names(value_set)
    return bool(names) and any_name_in(names, text)


def in_set(concept: Any, value_set: str) -> bool:
    """True when a coding of `concept` is in the value set, or its text holds one of the set's names."""
    return value_set in concepts_of(concept) or names_in(value_set, concept_text(concept))


# ---------------------------------------------------------------------------
# Conditions: one group per `condition-*` value set ("condition-ckd-4" is the
# group "ckd_4"), matched by code or by the set's text-match names.
# ---------------------------------------------------------------------------

CONDITION_PREFIX = "condition-"


def group_of(value_set: str) -> str:
    return value_set.removeprefix(CONDITION_PREFIX).replace("-", "_")


def value_set_of(group: str) -> str:
    return CONDITION_PREFIX + group.replace("_", "-")


def condition_groups(concept: Any) -> list[str]:
    """Names of the condition groups a concept belongs to (by code, and by the sets' names)."""
    pairs = tuple(codings(concept))
    text = concept_text(concept)
    if not pairs and not text:
        return []
    tables = _tables()
    if len(text) <= _CACHE_TEXT_MAX:
        return list(tables.groups_cached(pairs, text))
    return list(tables.groups(pairs, text))


def condition_names_in(text: str) -> bool:
    """Does free text name any condition group? (The reader's test for an uncoded diagnosis.)"""
    return bool(text) and _tables().names_found("condition", text)


# ---------------------------------------------------------------------------
# Fractures: the `fracture-site-*` sets give the site, `fracture-fragility`
# says "osteoporotic / fragility fracture" by itself.
# ---------------------------------------------------------------------------

HIP, VERTEBRAL, WRIST, HUMERUS, PELVIS = "hip", "vertebral", "wrist/forearm", "humerus", "pelvis"
RIB, CLAVICLE, ANKLE, OTHER = "rib", "clavicle", "ankle", "other"
FRACTURE_SITES = (HIP, VERTEBRAL, WRIST, HUMERUS, PELVIS, RIB, CLAVICLE, ANKLE, OTHER)
FRAGILITY_SET = "fracture-fragility"
SITE_OF_SET = {
    "fracture-site-hip": HIP, "fracture-site-vertebral": VERTEBRAL, "fracture-site-wrist-forearm": WRIST,
    "fracture-site-humerus": HUMERUS, "fracture-site-pelvis": PELVIS, "fracture-site-rib": RIB,
    "fracture-site-clavicle": CLAVICLE, "fracture-site-ankle": ANKLE,
    # Osteoporotic fractures of other named bones (scapula, tibia, hand, ...) and codes that
    # name no site (443165006, Z87.310): "other", which merges with any site into one event.
    "fracture-site-other": OTHER, "fracture-site-unspecified": OTHER,
}

# How each site counts (one place; brief 8.3 note, BHOF22):
# - A code in `fracture-fragility` (M80.-, Z87.310, SNOMED "osteoporotic fracture of ...")
#   is a fragility fracture at any site and any age.
# - Any other fracture code (an S-code, "closed fracture of hip") is a fracture of any
#   mechanism. At 50 or over, and with no transport accident beside it, it is a *probable*
#   fragility fracture only at the typical fragility sites: hip, spine, wrist/forearm,
#   humerus, pelvis and ribs (BHOF22's typical fragility sites; brief 8.3 lists S72, S22
#   (spine and ribs), S32, S52.5 and S42.2).
# - Ankle and clavicle fractures are fractures (events, and a "fresh fracture" for massage
#   and exercise safety) but never "probable fragility" from such a code alone: neither
#   site is a typical osteoporotic fracture site, and most are traumatic. Coded as
#   osteoporotic they are fragility fractures like any other.
PROBABLE_FRAGILITY_SITES = frozenset({HIP, VERTEBRAL, WRIST, HUMERUS, PELVIS, RIB})


@dataclass(frozen=True)
class FractureCode:
    site: str                 # FRACTURE_SITES
    fragility_specific: bool  # a code of the concept is in fracture-fragility
    code: str                 # the code that gave the site, as facts print it
    follow_up: bool = False   # ICD-10-CM 7th character of a later encounter or a sequela (follow_up_code)
    sequela: bool = False     # follow_up, and every such code is a sequela (7th character S): healed


# ICD-10-CM fracture codes (S-, M80, M84.4, M48.5) carry the encounter in their 7th
# character: A, B, C initial encounter (a new fracture); D, E, F, G, H, J, K, M, N, P, Q, R
# a later encounter for the same fracture (routine or delayed healing, nonunion, malunion);
# S sequela (ICD-10-CM Official Guidelines for Coding and Reporting, sections I.C.13.c for
# pathological fractures and I.C.19.a / I.C.19.c.1 for injuries). Only the initial encounter
# dates a fracture: a follow-up recorded months or years later is the same fracture.
# A later-encounter code (D to R) is care "during the healing or recovery phase" (I.C.19.a):
# when it is recent the fracture is still healing (or not united); a sequela code (S) is a
# late effect of a fracture that has healed (I.C.19.a: "complications or conditions that
# arise as a direct result of an injury"), never a fresh fracture.
INITIAL_ENCOUNTER = frozenset("ABC")
SEQUELA = "S"


def follow_up_code(system: str, code: str) -> bool:
    """An ICD-10-CM code whose 7th character is an encounter letter other than an initial
    encounter (a digit there is no encounter: pregnancy codes give the fetus)."""
    norm = valuesets.normalise(system, code)
    return system == ICD10CM and len(norm) == 7 and norm[6].isalpha() and norm[6] not in INITIAL_ENCOUNTER


def follow_up_concept(concept: Any) -> bool:
    """Every ICD-10-CM coding of the concept is a later-encounter or sequela code (W19.XXXD: a
    visit for the injury of an earlier fall, not a new fall); False without ICD-10-CM codings."""
    icd = [c for s, c in codings(concept) if s == ICD10CM]
    return bool(icd) and all(follow_up_code(ICD10CM, c) for c in icd)


def classify_fracture(concept: Any) -> FractureCode | None:
    """Site and fragility status of a fracture concept, or None. The codings of one
    concept describe one fracture: the most specific site wins (a named site over
    "other"; ICD-10-CM before SNOMED CT), and any fragility code makes it specific.
    `follow_up` when its ICD-10-CM fracture codes are all later-encounter or sequela codes."""
    best: tuple[int, str, str] | None = None  # (rank, site, code)
    fragility = False
    encounters: set[bool] = set()  # per ICD-10-CM fracture coding: is it a follow-up?
    sequelae: set[bool] = set()    # per ICD-10-CM fracture coding: is it a sequela (7th character S)?
    for system, code in codings(concept):
        found = terms().concepts_for(system, code)
        if not found:
            continue
        fragility = fragility or FRAGILITY_SET in found
        if system == ICD10CM and any(v in SITE_OF_SET for v in found):
            encounters.add(follow_up_code(system, code))
            sequelae.add(follow_up_code(system, code) and valuesets.normalise(system, code)[6] == SEQUELA)
        for value_set in found:
            site = SITE_OF_SET.get(value_set)
            if site is None:
                continue
            rank = (0 if site != OTHER else 2) + (0 if system == ICD10CM else 1)
            if best is None or rank < best[0]:
                best = (rank, site, shown_code(system, code))
    if best is None:
        return None
    # A follow-up when its ICD-10-CM codes all say so (a SNOMED CT coding beside them has no encounter).
    return FractureCode(best[1], fragility, best[2], follow_up=encounters == {True}, sequela=sequelae == {True})


# ---------------------------------------------------------------------------
# Drugs: codes and names from the `drug-<agent>` sets (`-oncology` sets: the
# oncology products, exposure but not a regimen); class, dosing interval and
# label are rule logic, here.
# ---------------------------------------------------------------------------

ORAL_BP, IV_BP, DENOSUMAB, SERM, PTH_ANALOG, ROMOSOZUMAB = (
    "oral_bp", "iv_bp", "denosumab", "serm", "pth_analog", "romosozumab")
CALCIUM, VITAMIN_D = "calcium", "vitamin_d"
ANTICOAGULANT, CORTICOSTEROID, PPI = "anticoagulant", "corticosteroid", "ppi"
SMOKING_CESSATION = "smoking_cessation"  # cessation therapy on the medication list (C-LIFESTYLE: smoking addressed)
ESTROGEN = "estrogen"  # menopausal hormone therapy: bone-active (second-pass 4), not an osteoporosis drug

# Old / history-of MI codes (all in condition-mi): ICD-10-CM I25.2 "Old myocardial infarction" (coded
# once the MI is over 4 weeks old, I21 being for the first 4 weeks), SNOMED CT 1755008 "Old
# myocardial infarction", 399211009 "History of myocardial infarction", 32574007 "Past myocardial
# infarction". With no onset their recordedDate is the day of a problem-list entry, not of the
# MI (review 10 M4): C-SAFE-ROMO-CV then asks for the date instead of asserting a recent MI.
OLD_MI_CODES = frozenset({"I25.2", "I252", "1755008", "399211009", "32574007"})

ANTIRESORPTIVE_CLASSES = frozenset({ORAL_BP, IV_BP, DENOSUMAB, SERM})
BISPHOSPHONATE_CLASSES = frozenset({ORAL_BP, IV_BP})
ANABOLIC_CLASSES = frozenset({PTH_ANALOG, ROMOSOZUMAB})
OSTEOPOROSIS_DRUG_CLASSES = ANTIRESORPTIVE_CLASSES | ANABOLIC_CLASSES
# Bone-active therapy: no "start a drug" card beside any of these (second-pass 4).
BONE_ACTIVE_CLASSES = OSTEOPOROSIS_DRUG_CLASSES | {ESTROGEN}
SUPPLEMENT_CLASSES = frozenset({CALCIUM, VITAMIN_D})
ONCOLOGY_SUFFIX = "-oncology"


@dataclass(frozen=True)
class Agent:
    name: str                       # agent id, e.g. "alendronate" (value set drug-alendronate)
    drug_class: str
    dosing_interval_days: int = 1   # one dose covers this many days (for "current" and exposure)
    label_setid: str = ""           # DailyMed SPL set id of the label the cards cite (second-pass 9)
    label_brand: str = ""           # the label's brand name, for card text
    # A course of `course_doses` clinic-given doses (0: none) stays current after the interval,
    # until the next dose is overdue by `overdue_grace_days`, while fewer doses than that are given.
    course_doses: int = 0
    overdue_grace_days: int = 0

    @property
    def value_set(self) -> str:
        return "drug-" + self.name.replace("_", "-")

    # Codes and names, from the active value sets.
    @property
    def rxnorm(self) -> frozenset[str]:
        return terms().codes(self.value_set, RXNORM)

    @property
    def names(self) -> tuple[str, ...]:
        return terms().names(self.value_set)

    @property
    def oncology_rxnorm(self) -> frozenset[str]:
        t = terms()
        return t.codes(self.value_set + ONCOLOGY_SUFFIX, RXNORM) if self.value_set + ONCOLOGY_SUFFIX in t else frozenset()

    @property
    def oncology_names(self) -> tuple[str, ...]:
        t = terms()
        return t.names(self.value_set + ONCOLOGY_SUFFIX) if self.value_set + ONCOLOGY_SUFFIX in t else ()


AGENTS: dict[str, Agent] = {a.name: a for a in (
    # Fosamax (Organon) SPL set id, V (openFDA NDC 78206-135)
    Agent("alendronate", ORAL_BP, 7, "14e931fd-2c5f-4d90-b7db-5980706f4a56", "Fosamax"),
    # Actonel's own set id was not found; risedronate 35 mg (Apotex) label, V (openFDA NDC 60505-3096)
    Agent("risedronate", ORAL_BP, 7, "b90f2e5b-10b8-29a7-0360-31bd0dae0ec2", "risedronate"),
    # Boniva's own set id was not found; ibandronate 150 mg (Aurobindo) label, V (openFDA NDC 65862-237)
    Agent("ibandronate", ORAL_BP, 30, "86c0b4ae-5e38-4efe-88af-50ac560e294f", "ibandronate"),
    # Reclast SPL set id, V (openFDA NDC 66758-155, rxcui 705824/705875)
    Agent("zoledronic_acid", IV_BP, 365, "5a9b3737-9ce6-4a89-b76e-6aab79eba9cf", "Reclast"),
    # Prolia SPL set id, V (FDALabel SPL for NDC 55513-710, 2026 version with the 2024 boxed warning)
    Agent("denosumab", DENOSUMAB, 182, "49e5afe9-a0c7-40c4-af9f-f287a80c5c88", "Prolia"),
    # Evista SPL set id, V (openFDA NDC 0002-4184)
    Agent("raloxifene", SERM, 1, "fcaaa6dc-74e8-4fb8-800c-5574bf0f8de9", "Evista"),
    Agent("bazedoxifene", SERM),
    # Forteo SPL set id, V (openFDA NDC 0002-8400)
    Agent("teriparatide", PTH_ANALOG, 1, "aae667c5-381f-4f92-93df-2ed6158d07b0", "Forteo"),
    # Tymlos SPL set id not found in the public sources seen: cards link the DailyMed search for it.
    Agent("abaloparatide", PTH_ANALOG, 1, "", "Tymlos"),
    # Evenity SPL set id, V? (fda.report DailyMed mirror of the Amgen label)
    # Evenity: 12 monthly doses; the 4-week grace before a dose counts as overdue is the one the
    # project uses for denosumab (SAFE-13, settings.dmab_grace_weeks default; review 10 H1).
    Agent("romosozumab", ROMOSOZUMAB, 30, "471baba2-7154-4488-9891-0db2f46791e7", "Evenity",
          course_doses=12, overdue_grace_days=28),
    Agent("estrogen", ESTROGEN),
    Agent("calcium", CALCIUM),
    Agent("vitamin_d", VITAMIN_D),
    # Massage modifiers and calcium-citrate choice.
    Agent("anticoagulant", ANTICOAGULANT),
    Agent("corticosteroid", CORTICOSTEROID),
    Agent("ppi", PPI),
    Agent("smoking_cessation", SMOKING_CESSATION),
)}

# Non-systemic forms: a steroid cream or inhaler is not a "long-term corticosteroid".
NON_SYSTEMIC_WORDS = ("inhal*", "topical", "cream", "ointment", "lotion", "nasal", "ophthalmic",
                      "otic", "eye drop*", "gel", "foam", "rectal", "enema", "shampoo", "intra-articular")
# Local (vaginal) estrogen does not protect bone (transdermal gels and patches do).
NON_SYSTEMIC_ESTROGEN = ("vaginal*", "intravaginal", "cream", "estring", "vagifem", "imvexxy", "yuvafem")
# The oncology strengths, whatever the brand (exposure, not a regimen; LABEL): denosumab 120 mg,
# which RxNorm's SCD writes "1.7 ML denosumab 70 MG/ML Injection" (Prolia and its biosimilars
# are 60 MG/ML); zoledronic acid 4 mg (Zometa: 4 mg/5 mL = 0.8 MG/ML, 4 mg/100 mL = 0.04 MG/ML;
# Reclast is 5 mg/100 mL = 0.05 MG/ML). The lookbehind keeps "0.04 mg" from reading as "4 mg".
_ONCOLOGY_DOSE = {
    "denosumab": re.compile(r"(?<![\d.])(?:120\s*mg|70\s*mg\s*/\s*ml)"),
    "zoledronic_acid": re.compile(r"(?<![\d.])(?:4\s*mg(?![a-z])|0?\.8\s*mg\s*/\s*ml|0?\.04\s*mg\s*/\s*ml)"),
}

# IV ibandronate (Boniva injection, 3 mg/3 mL every 3 months; LABEL, U: the brief's source table
# lists Boniva, not checked; AACE20 names ibandronate IV among the bisphosphonates) is one
# agent with the monthly 150 mg tablet (the same value set: no RxNorm code for the injection is
# on record in this project), told apart as a product by the form or route its text names
# ("3 ML ibandronate 1 MG/ML Prefilled Syringe", "ibandronate 3 mg/3 mL injection", route IV).
# Review 16: read as the monthly tablet, a dose covered 30 days (C-TX-BP asked to start a
# bisphosphonate 2 months after one), an order drew C-SAFE-ESOPH ("by mouth"), and a second
# dose a month after the first passed unseen. The tablets never name these words.
_IV_IBANDRONATE = re.compile(r"inject|intraven|syringe|infusion|(?<![a-z])i\.?v\.?(?![a-z])"
                             r"|(?<![\d.])3\s*mg\s*/\s*3\s*ml|(?<![\d.])1\s*mg\s*/\s*ml")
IV_IBANDRONATE_DAYS = 91  # every 3 months (3 x 30.4375 days): one dose covers this long


def iv_ibandronate(concept: Any, res: Mapping[str, Any] | None = None) -> bool:
    """An ibandronate concept (or order) that is the 3-monthly injection, by the words of its
    medication or, in an order, of its dosage's route."""
    text = concept_text(concept)
    if _IV_IBANDRONATE.search(text):
        return True
    dosages = (res.get("dosageInstruction") or res.get("dosage") or ()) if res else ()
    for dosage in dosages if isinstance(dosages, list) else (dosages,):  # an administration's: one
        if isinstance(dosage, dict) and _IV_IBANDRONATE.search(concept_text(dosage.get("route"))):
            return True
    return False


# Glucocorticoid dose reading (ACR22, second-pass 5): mg of the drug -> mg of prednisone.
# Standard equivalences (prednisone 5 mg = prednisolone 5 = methylprednisolone 4 = triamcinolone 4
# = hydrocortisone 20 = cortisone 25 = dexamethasone 0.75 = betamethasone 0.6 = deflazacort 6): U,
# textbook values; the clinician confirms. Order matters only for display.
PREDNISONE_EQUIVALENT: dict[str, float] = {
    "prednisone": 1.0, "prednisolone": 1.0, "methylprednisolone": 1.25, "medrol": 1.25,
    "triamcinolone": 1.25, "hydrocortisone": 0.25, "cortisone": 0.2, "dexamethasone": 5 / 0.75,
    "betamethasone": 5 / 0.6, "deflazacort": 5 / 6,
}


def prednisone_factor(concept: Any) -> tuple[str, float] | None:
    """(glucocorticoid name, mg prednisone per mg) for a medication concept, or None."""
    text = concept_text(concept)
    for name, factor in PREDNISONE_EQUIVALENT.items():
        if name_in(name, text):
            return name, factor
    return None


def label_url(agent: str) -> str:
    """DailyMed page of the drug's label: the SPL set id when known, else a search for the brand."""
    a = AGENTS.get(agent)
    if a and a.label_setid:
        return f"https://dailymed.nlm.nih.gov/dailymed/drugInfo.cfm?setid={a.label_setid}"
    brand = (a.label_brand if a and a.label_brand else agent.replace("_", " "))
    return f"https://dailymed.nlm.nih.gov/dailymed/search.cfm?labeltype=all&query={brand.upper()}"


@dataclass(frozen=True)
class DrugMatch:
    agents: tuple[str, ...]  # agent ids, e.g. ("alendronate", "vitamin_d") for Fosamax Plus D
    oncology: bool           # Xgeva 120 mg / Zometa 4 mg: antiresorptive exposure, not a regimen

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(AGENTS[a].drug_class for a in self.agents)


def classify_medication(concept: Any) -> DrugMatch:
    """Agents in a medication concept: codes first (any system the value sets hold), then names."""
    pairs = tuple(codings(concept))
    text = concept_text(concept)
    tables = _tables()
    # Long charts repeat the same few drugs: remember recent answers (short texts only,
    # so the cache stays small).
    if len(text) <= _CACHE_TEXT_MAX:
        return tables.drugs_cached(pairs, text)
    return tables.drugs(pairs, text)


def drug_names_in(text: str) -> bool:
    """Does free text name any agent? (The reader's test for an uncoded medication.)"""
    return bool(text) and _tables().names_found("agent", text)


# ---------------------------------------------------------------------------
# Orders and procedures: `order-*` sets, dialysis in `condition-dialysis`,
# operations in `procedure-surgery`.
# ---------------------------------------------------------------------------

DXA_ORDER, MASSAGE_ORDER, MANUAL_THERAPY_ORDER = "order-dxa", "order-massage", "order-manual-therapy"
SPINAL_MANIPULATION_ORDER, PT_ORDER, SURGERY = "order-spinal-manipulation", "order-physical-therapy", "procedure-surgery"
DIALYSIS = "condition-dialysis"
# Routine procedures whose names end like operations ("-otomy", "-ectomy"): never an operation.
NOT_SURGERY_NAMES = ("phlebotomy", "dialysis", "bone density", "dxa")
SURGERY_SUFFIXES = re.compile(r"[a-z](ectomy|otomy|ostomy|plasty|pexy)(?![a-z])")


def is_dxa_concept(concept: Any) -> bool:
    return in_set(concept, DXA_ORDER)


def is_massage_concept(concept: Any) -> bool:
    return in_set(concept, MASSAGE_ORDER)


def is_manual_therapy_concept(concept: Any) -> bool:
    return in_set(concept, MANUAL_THERAPY_ORDER)


def is_spinal_manipulation(concept: Any) -> bool:
    """A spinal manipulation order, by code only (the names of manual therapy do not say "spinal")."""
    return SPINAL_MANIPULATION_ORDER in concepts_of(concept)


def is_pt_concept(concept: Any) -> bool:
    return in_set(concept, PT_ORDER)


def is_dialysis_procedure(concept: Any) -> bool:
    return DIALYSIS in concepts_of(concept)


def is_surgery(code: Any, category: Any) -> bool:
    """A Procedure that reads as an operation (massage safety: post-surgical sites)."""
    categories = category if isinstance(category, list) else [category]
    if any(SURGERY in concepts_of(cat) for cat in categories):
        return True
    text = concept_text(code)
    if any_name_in(NOT_SURGERY_NAMES, text):
        return False
    return names_in(SURGERY, text) or SURGERY_SUFFIXES.search(text) is not None


# ---------------------------------------------------------------------------
# Observation values and units
# ---------------------------------------------------------------------------

CURRENT_SMOKER, NON_SMOKER = "answer-current-smoker", "answer-non-smoker"
POSITIVE, NEGATIVE = "answer-positive", "answer-negative"
FES_I, SHORT_FES_I = "obs-fes-i", "obs-short-fes-i"
FRAX_SETS = ("frax-mof", "frax-hip")
HCG_POSITIVE_IU_L = 25.0  # quantitative hCG at or above this (mIU/mL) reads as positive; U, common assay cut-off
HCG_NEGATIVE_IU_L = 5.0   # below this negative; in between equivocal (unknown)
# T-/Z-scores with a local code are read by these words in their name (site from bodySite).
SCORE_WORDS = ("t-score", "z-score")


def observation_names_in(text: str) -> bool:
    """Does an Observation's name say something read by name (FRAX, FES-I, a T- or Z-score)?"""
    return bool(text) and (any(w in text for w in SCORE_WORDS) or _tables().names_found("observation", text))


@functools.lru_cache(maxsize=512)
def _unit_key(unit: str) -> str:
    """One spelling per unit: "µmol/L", "umol/l", "micromol/L" and "[IU]/L" vs "IU/L" are one each."""
    key = unit.replace(" ", "").lower().replace("[", "").replace("]", "")
    for old, new in (("µ", "u"), ("μ", "u"), ("micro", "u"), ("mcg", "ug"), ("mcmol", "umol")):
        key = key.replace(old, new)
    return _UNIT_SYNONYMS.get(key, key)


# Spellings labs use that UCUM writes otherwise (reading logic, not codes).
_UNIT_SYNONYMS = {"kilogram": "kg", "kilograms": "kg", "kgs": "kg", "lb": "lb_av", "lbs": "lb_av",
                  "pound": "lb_av", "pounds": "lb_av", "units/l": "u/l", "percent": "%"}


# eGFR units (reading logic): labs write mL/min/1.73 m2 a dozen ways ("mL/min/{1.73_m2}",
# "ml/min/1.73m2", "mL/min per 1.73 m2", UCUM "mL/(min.1.73.m2)" and "mL.min-1", French
# "mL/mn/1.73m2", ...), all one unit; SI labs report mL/s/1.73 m2 (UCUM "mL/s/{1.73_m2}"),
# x 60 = mL/min (review 10: 1.0 mL/s, a normal 60, read as an eGFR of 1). Any other unit
# (mL/h, mg/dL, ...) is no reading: unknown, never guessed. Matched on _unit_key's spelling.
EGFR_SET = "lab-egfr"
_PER = r"ml(?:/\(?|[.\u00b7*])"           # "ml/", "ml/(" (UCUM grouping) or "ml." / "ml·" (UCUM product)
_PER_END = r"(?:-1|\^-1|\u207b\u00b9)?(?:per|(?![a-z]))"  # "min-1", then no further letters ("per" may follow)
_EGFR_UNITS = ((re.compile(_PER + r"(?:min(?:ute)?s?|mn)" + _PER_END), 1.0),  # "mn": French minute
               (re.compile(_PER + r"(?:s|secs?|seconds?)" + _PER_END), 60.0))


def _egfr_factor(key: str) -> float | None:
    return next((factor for pattern, factor in _EGFR_UNITS if pattern.match(key)), None)


def convert(value_set: str, value: float, unit: str, default_unit: str = "") -> float | None:
    """`value` in the value set's reporting unit (its first `lab-unit`), from `unit`, or
    from `default_unit` when the result has none; None when the unit is not one of the
    set's (unknown, never guessed)."""
    key = _unit_key(unit or default_unit)
    if not key:
        return value
    factor = _egfr_factor(key) if value_set == EGFR_SET else _tables().unit_factors(value_set).get(key)
    return None if factor is None else value * factor


def default_unit(value_set: str, concept: Any) -> str:
    """The unit the value set gives for a result of this concept's code that carries none."""
    t = terms()
    for system, code in codings(concept):
        unit = t.default_unit(value_set, system, code) if value_set in t.concepts_for(system, code) else ""
        if unit:
            return unit
    return ""


# ---------------------------------------------------------------------------
# Care already on record (second-pass section 7: an info card only when
# something is to be done). Each kind is the id of its value set.
# ---------------------------------------------------------------------------

PT_CARE = "order-physical-therapy"
EXERCISE_CARE = "order-exercise-programme"
OT_CARE = "order-occupational-therapy"
FALL_ASSESSMENT_CARE = "order-fall-risk-assessment"
SMOKING_CESSATION_CARE = "order-smoking-cessation"
DIETITIAN_CARE = "order-dietitian"
DXA_CARE = "order-dxa"
NEPHROLOGY_CARE = "order-nephrology"  # the CKD-MBD referral already made (review 14)
CARE_KINDS = (PT_CARE, EXERCISE_CARE, OT_CARE, FALL_ASSESSMENT_CARE, SMOKING_CESSATION_CARE, DIETITIAN_CARE,
              DXA_CARE, NEPHROLOGY_CARE)
# Visits (Encounter.type) that count: the prefetch asks only for these.
VISIT_CARE_KINDS = (PT_CARE, EXERCISE_CARE, OT_CARE)


def care_kinds(*concepts: Any) -> frozenset[str]:
    """The CARE_KINDS a ServiceRequest, Procedure or Encounter records, by code
    or, failing that, by the value set's text-match names."""
    found: set[str] = set()
    for concept in concepts:
        found |= concepts_of(concept) & set(CARE_KINDS)
        text = concept_text(concept)
        if text:
            found |= {kind for kind in CARE_KINDS if kind not in found and names_in(kind, text)}
    return frozenset(found)


def care_names_in(text: str) -> bool:
    """Does free text name any kind of care? (The reader's test for an uncoded order or visit.)"""
    return bool(text) and _tables().names_found("care", text)


# ---------------------------------------------------------------------------
# Everything derived from one Terminology, rebuilt when the active one changes
# ---------------------------------------------------------------------------

_CACHE_TEXT_MAX = 300  # longer concept texts are classified but not cached


class _Tables:
    def __init__(self, t: Terminology) -> None:
        self.terminology = t
        missing = sorted(a.value_set for a in AGENTS.values() if a.value_set not in t)
        unknown = sorted(v for v in t.ids("drug-") if v.removesuffix(ONCOLOGY_SUFFIX) not in
                         {a.value_set for a in AGENTS.values()})
        if missing or unknown:
            raise valuesets.ValueSetError(f"drug value sets and agents disagree: no file for {missing}, "
                                          f"no agent for {unknown}")
        self.agent_of = {a.value_set: a.name for a in AGENTS.values()}
        self.agent_of.update({a.value_set + ONCOLOGY_SUFFIX: a.name for a in AGENTS.values()
                              if a.value_set + ONCOLOGY_SUFFIX in t})
        self.agent_names_of = {name: t.names(vs) for vs, name in self.agent_of.items()
                               if not vs.endswith(ONCOLOGY_SUFFIX)}
        self.oncology_names_of = {name: t.names(vs) for vs, name in self.agent_of.items()
                                  if vs.endswith(ONCOLOGY_SUFFIX)}
        self.agent_names = tuple(n for vs in self.agent_of for n in t.names(vs))
        self.condition_sets = t.ids(CONDITION_PREFIX)
        self.condition_names = tuple(n for vs in self.condition_sets for n in t.names(vs))
        self.observation_names = tuple(n for vs in (*FRAX_SETS, FES_I, SHORT_FES_I) if vs in t for n in t.names(vs))
        self._units: dict[str, dict[str, float]] = {}
        self.groups_cached = functools.lru_cache(maxsize=2048)(self.groups)
        self.drugs_cached = functools.lru_cache(maxsize=2048)(self.drugs)
        care_names = tuple(n for vs in CARE_KINDS if vs in t for n in t.names(vs))
        patterns = {"condition": _names_pattern(self.condition_names), "agent": _names_pattern(self.agent_names),
                    "observation": _names_pattern(self.observation_names), "care": _names_pattern(care_names)}
        # (kind, text) -> does the text hold a name: charts repeat the same few texts.
        self.names_found = functools.lru_cache(maxsize=4096)(
            lambda kind, text: patterns[kind].search(text) is not None)

    def unit_factors(self, value_set: str) -> dict[str, float]:
        factors = self._units.get(value_set)
        if factors is None:
            factors = {_unit_key(code): factor for code, factor in self.terminology.units(value_set)}
            self._units[value_set] = factors
        return factors

    def groups(self, pairs: tuple[tuple[str, str], ...], text: str) -> tuple[str, ...]:
        t = self.terminology
        found = {v for s, c in pairs for v in t.concepts_for(s, c) if v.startswith(CONDITION_PREFIX)}
        # Most of a problem list is in no value set: one search rules names out.
        if text and any_name_in(self.condition_names, text):
            found |= {vs for vs in self.condition_sets if vs not in found and any_name_in(t.names(vs), text)}
        return tuple(group_of(vs) for vs in self.condition_sets if vs in found)

    def drugs(self, pairs: tuple[tuple[str, str], ...], text: str) -> DrugMatch:
        t = self.terminology
        agents: list[str] = []
        oncology = False
        for system, code in pairs:
            for vs in sorted(t.concepts_for(system, code)):
                agent = self.agent_of.get(vs)
                if agent and agent not in agents:
                    agents.append(agent)
                oncology = oncology or (agent is not None and vs.endswith(ONCOLOGY_SUFFIX))
        if text:
            # Most drugs on a chart are none of ours: one search rules them out.
            if any_name_in(self.agent_names, text):
                for agent, names in self.agent_names_of.items():
                    if agent not in agents and any_name_in(names + self.oncology_names_of.get(agent, ()), text):
                        agents.append(agent)
            for name in agents:
                if any_name_in(self.oncology_names_of.get(name, ()), text):
                    oncology = True
                dose = _ONCOLOGY_DOSE.get(name)
                if dose is not None and dose.search(text):
                    oncology = True
        # A systemic-steroid match on a non-systemic form is dropped.
        if "corticosteroid" in agents and any_name_in(NON_SYSTEMIC_WORDS, text):
            agents.remove("corticosteroid")
        if "estrogen" in agents and any_name_in(NON_SYSTEMIC_ESTROGEN, text):
            agents.remove("estrogen")
        return DrugMatch(tuple(agents), oncology)


_current: _Tables | None = None


def _tables() -> _Tables:
    global _current
    t = terms()
    current = _current
    if current is None or current.terminology is not t:
        current = _current = _Tables(t)
    return current


# ---------------------------------------------------------------------------
# The former Python tables by name, read from the active value sets (callers and
# tests that build resources name codes this way).
# ---------------------------------------------------------------------------

_LOINC_TABLES = {
    "EGFR_CODES": "lab-egfr", "CALCIUM_TOTAL_CODES": "lab-calcium-total", "ALBUMIN_CODES": "lab-albumin",
    "VITAMIN_D_25OH_CODES": "lab-vitamin-d-25oh", "PTH_CODES": "lab-pth", "CREATININE_CODES": "lab-creatinine",
    "BODY_WEIGHT_CODES": "obs-body-weight", "BMI_CODES": "obs-bmi", "ALP_CODES": "lab-alp",
    "DXA_BMD_CODES": "dxa-bmd", "DXA_STUDY_CODES": "dxa-study",
    "FALL_RISK_ASSESSMENT_CODES": "obs-fall-risk-assessment",
}
_ONE_LOINC = {"FRAX_MOF": "frax-mof", "FRAX_HIP": "frax-hip", "SMOKING_STATUS": "obs-smoking-status"}


def __getattr__(name: str) -> Any:
    t = terms()
    if name in _LOINC_TABLES:
        return t.codes(_LOINC_TABLES[name], LOINC)
    if name in _ONE_LOINC:
        return min(t.codes(_ONE_LOINC[name], LOINC))
    if name in ("DXA_T_SCORE_SITES", "DXA_Z_SCORE_SITES"):
        kind = "dxa-t-score-" if name == "DXA_T_SCORE_SITES" else "dxa-z-score-"
        return {code: vs.removeprefix(kind).upper() for vs in t.ids(kind) for code in t.codes(vs, LOINC)}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
