"""Codes the service recognises, in one place (brief section 8).

Every code here comes from ../shared/clinical/brief.md section 8 and its
addendum; the brief's verification mark (V, V?, U) is kept in a comment where
the code is weakly sourced, so a reviewer sees which codes to confirm.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"

# --- DXA (brief 8.1) -------------------------------------------------------
# T-scores by site. "FN" is read from the femur codes, "TH" from the hip codes.
DXA_T_SCORE_SITES: dict[str, str] = {
    "38267-1": "LS",   # DXA Lumbar spine [T-score]
    "38263-0": "FN",   # DXA Femur [T-score] (used for femoral neck)
    "80947-5": "FN",   # DXA Femur - right [T-score]
    "80948-3": "FN",   # DXA Femur - left [T-score]
    "38264-8": "TH",   # DXA Hip [T-score] (used for total hip)
    "80945-9": "TH",   # DXA Hip - right [T-score]
    "80946-7": "TH",   # DXA Hip - left [T-score]
    "38265-5": "RADIUS",  # DXA Radius and Ulna [T-score] (1/3 radius)
    "80943-4": "RADIUS",
    "80944-2": "RADIUS",
    "38266-3": "CALCANEUS",  # peripheral, not diagnostic
}
DXA_Z_SCORE_SITES: dict[str, str] = {
    "85394-5": "LS",
    "80934-3": "FN", "80939-2": "FN", "80940-0": "FN",
    "80933-5": "TH", "80937-6": "TH", "80938-4": "TH",
    "80932-7": "RADIUS", "80935-0": "RADIUS", "80936-8": "RADIUS",
}
DXA_BMD_CODES = frozenset({"24966-4", "24701-5", "38261-4", "46278-8", "46279-6", "24890-6", "46383-6"})
DXA_STUDY_CODES = frozenset({"38268-9"})

# --- FRAX, labs, assessments (brief 8.2) -----------------------------------
FRAX_MOF = "90265-0"
FRAX_HIP = "90266-8"  # V?: also recognised by display text
EGFR_CODES = frozenset({
    "69405-9", "98979-8", "62238-1", "98980-6", "94677-2", "48642-3", "48643-1",
    "50044-7", "70969-1", "77147-7", "88293-6", "88294-4", "50210-4", "33914-3",
})
CALCIUM_TOTAL_CODES = frozenset({"17861-6", "2000-8"})
CALCIUM_IONIZED_CODES = frozenset({"1995-0"})
ALBUMIN_CODES = frozenset({"1751-7"})
VITAMIN_D_25OH_CODES = frozenset({"62292-8", "1989-3", "14635-7", "49054-0"})
PTH_CODES = frozenset({"2731-8"})  # U
SMOKING_STATUS = "72166-2"
FALL_RISK_ASSESSMENT_CODES = frozenset({"73830-2", "57254-5"})
# Second pass (second-pass.md sections 1, 2, 8). Creatinine for Cockcroft-Gault, which is
# defined on SERUM creatinine: 2160-0 serum/plasma mass V (many public lab tables), 14682-9
# serum/plasma moles U. Whole-blood creatinine (38483-4, what Synthea writes) is left out on
# purpose: in the real-world corpus it disagrees with the same draw's eGFR by a factor of 4.
CREATININE_CODES = frozenset({"2160-0", "14682-9"})
BODY_WEIGHT_CODES = frozenset({"29463-7", "3141-9"})  # 29463-7 V [SYN]; 3141-9 measured U
BMI_CODES = frozenset({"39156-5"})                     # V [SYN]
ALP_CODES = frozenset({"6768-6"})                      # U (already ordered by C-LAB-BASELINE)
# Pregnancy tests: hCG urine 2106-3 V (HL7 IG examples), serum 2118-8 and beta-subunit
# 2110-5 V? (one code list); quantitative beta-hCG 21198-7 and 19080-1 U; pregnancy status 82810-3 U.
HCG_QUALITATIVE_CODES = frozenset({"2106-3", "2118-8", "2110-5"})
HCG_QUANTITATIVE_CODES = frozenset({"21198-7", "19080-1"})
PREGNANCY_STATUS_CODES = frozenset({"82810-3"})
HCG_POSITIVE_IU_L = 25.0  # quantitative hCG at or above this (mIU/mL) reads as positive; U, common assay cut-off
# Fear of falling: FES-I / Short FES-I have no LOINC code in the public sources seen; read by name.
FES_I_NAMES = ("fes-i", "falls efficacy scale")
SHORT_FES_I_NAMES = ("short fes-i", "short falls efficacy scale")

# Every Observation code the rules read; the prefetch templates ask for these.
OBSERVATION_CODES: tuple[str, ...] = tuple(sorted(
    set(DXA_T_SCORE_SITES) | set(DXA_Z_SCORE_SITES) | DXA_BMD_CODES | DXA_STUDY_CODES
    | {FRAX_MOF, FRAX_HIP} | EGFR_CODES | CALCIUM_TOTAL_CODES | CALCIUM_IONIZED_CODES
    | ALBUMIN_CODES | VITAMIN_D_25OH_CODES | PTH_CODES | {SMOKING_STATUS}
    | FALL_RISK_ASSESSMENT_CODES
))
# The second pass's labs (kidney function by Cockcroft-Gault, ALP, pregnancy tests), asked for
# under a prefetch key of their own: one query with every code would pass the 2048-character
# URL limit of the FHIR client (cds_service.fhir.allowlist) once a server pages it.
SAFETY_LAB_CODES: tuple[str, ...] = tuple(sorted(
    CREATININE_CODES | BODY_WEIGHT_CODES | BMI_CODES | ALP_CODES
    | HCG_QUALITATIVE_CODES | HCG_QUANTITATIVE_CODES | PREGNANCY_STATUS_CODES
))

# --- Procedures on file (brief 1, 8.4, 8.5) --------------------------------
DXA_CPT_CODES = frozenset({"77080", "77081", "77085", "77086"})
DXA_SNOMED_CODES = frozenset({"312681000", "241686001"})
BARIATRIC_SNOMED_CODES = frozenset({"442338001"})
# Dialysis services, VSAC 2.16.840.1.113883.3.464.1003.109.12.1013 (eCQM 2021 expansion, V):
# a subset of its CPT and SNOMED codes. A dialysis Procedure is kidney failure (second-pass 1).
DIALYSIS_CPT_CODES = frozenset({"90935", "90937", "90945", "90947", "90999", "99512"})
DIALYSIS_SNOMED_CODES = frozenset({
    "108241001", "265764009", "302497006", "71192002", "238318009", "238319001", "225230008",
    "233575001", "428648006", "714749008", "34897002", "67970008", "14684005", "676002",
})
# Surgery within N weeks (massage safety, seed 002): a Procedure categorised as surgical
# (SNOMED 387713003 "Surgical procedure", U) or whose name reads as an operation.
SURGICAL_CATEGORY_SNOMED = frozenset({"387713003"})
SURGERY_NAMES = ("surgery", "surgical", "operation", "arthroplasty", "fixation", "excision", "resection",
                 "amputation", "replacement of", "repair of", "vertebroplasty", "kyphoplasty")
NOT_SURGERY_NAMES = ("phlebotomy", "dialysis", "bone density", "dxa")  # "-otomy" / "-ectomy" look-alikes and routine procedures
SURGERY_SUFFIXES = re.compile(r"[a-z](ectomy|otomy|ostomy|plasty|pexy)(?![a-z])")

# Fracture-finding codes are not LOINC: an Observation whose *code* is a
# fracture (e.g. a vertebral fracture seen on imaging) is asked for by its
# SNOMED code in a prefetch key of its own (SNOMED_FRACTURE_CODES, below).

# Other systems the service reads or writes.
NUCC = "http://nucc.org/provider-taxonomy"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


# ---------------------------------------------------------------------------
# Reading CodeableConcepts
# ---------------------------------------------------------------------------

def codings(concept: Any) -> list[tuple[str, str]]:
    """(system, code) pairs of a CodeableConcept dict; tolerant of junk."""
    if not isinstance(concept, dict):
        return []
    out = []
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and isinstance(coding.get("code"), str):
            out.append((str(coding.get("system") or ""), coding["code"].strip()))
    return out


def concept_text(concept: Any) -> str:
    """Lower-cased text + coding displays, for name fallback matching."""
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text")]
    parts += [c.get("display") for c in concept.get("coding") or () if isinstance(c, dict)]
    return " | ".join(p for p in parts if isinstance(p, str)).lower()


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


def _icd_norm(code: str) -> str:
    # ICD-10-CM codes arrive with or without the dot ("M80.08XA" / "M8008XA").
    return code.replace(".", "").upper()


def icd_codes(concept: Any) -> list[str]:
    """ICD-10-CM codes of a concept, dot removed, upper case."""
    return [_icd_norm(c) for c in codes_in(concept, ICD10CM)]


def has_icd_prefix(concept: Any, prefixes: Iterable[str]) -> str | None:
    """The first ICD-10-CM code of `concept` starting with one of `prefixes`."""
    norm = tuple(_icd_norm(p) for p in prefixes)
    for code in icd_codes(concept):
        if code.startswith(norm):
            return code
    return None


@dataclass(frozen=True)
class ValueSet:
    """A small value set: ICD-10-CM prefixes, exact SNOMED codes, optional
    case-insensitive names matched against text/displays (only where codes
    are unverified and a wrong name match is unlikely)."""

    name: str
    icd_prefixes: tuple[str, ...] = ()
    snomed: frozenset[str] = frozenset()
    names: tuple[str, ...] = ()

    def matches(self, concept: Any) -> bool:
        return self._matches(*_concept_parts(concept))

    def _matches(self, icd: tuple[str, ...], snomed: frozenset[str], text: str) -> bool:
        if icd and self.icd_prefixes and any(c.startswith(_norm_prefixes(self.icd_prefixes)) for c in icd):
            return True
        if self.snomed and not self.snomed.isdisjoint(snomed):
            return True
        if self.names:
            return any_name_in(self.names, text)
        return False


@functools.lru_cache(maxsize=256)
def _norm_prefixes(prefixes: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_icd_norm(p) for p in prefixes)


def _concept_parts(concept: Any) -> tuple[tuple[str, ...], frozenset[str], str]:
    """(normalised ICD-10-CM codes, SNOMED codes, text) of a concept, read once
    for all value sets rather than once per value set."""
    pairs = codings(concept)
    return (tuple(_icd_norm(c) for s, c in pairs if s == ICD10CM),
            frozenset(c for s, c in pairs if s == SNOMED), concept_text(concept))


# ---------------------------------------------------------------------------
# Condition value sets (brief 1, 4, 8.3, 8.4). Marks: V / V? / U as in the brief.
# ---------------------------------------------------------------------------

CONDITION_VALUE_SETS: dict[str, ValueSet] = {vs.name: vs for vs in (
    ValueSet(
        "osteoporosis",
        # M81.0/M81.6/M81.8 V; M80.0- V, M80.8- U (by prefix); fracture implies osteoporosis.
        icd_prefixes=("M81.0", "M81.6", "M81.8", "M80.0", "M80.8"),
        snomed=frozenset({"64859006", "102447009", "18040001", "390833005",  # V
                          # osteoporotic fractures (V) also mean osteoporosis
                          "443165006", "11311601000119109", "203450003", "203451004",
                          "203452006", "240198002", "431031001", "704334005",
                          "704336007", "704335006"}),
    ),
    # M85.80-M85.89 V. The VSAC set also holds M89.8X- ("other specified
    # disorders of bone"); left out on purpose: it is not specific to osteopenia.
    ValueSet("osteopenia", icd_prefixes=("M85.8",), snomed=frozenset({"312894000", "735614005"})),
    ValueSet("glucocorticoid_osteoporosis", snomed=frozenset({"390833005"})),  # V
    # Esophageal disorders (SAFE-7): K22.0 achalasia, K22.2 stricture, K22.7- Barrett's
    # (confirmed, older FY table), K22.4 dyskinesia U, I85 varices U.
    ValueSet("esophageal", icd_prefixes=("K22.0", "K22.2", "K22.4", "K22.7", "I85"),
             names=("achalasia", "esophageal stricture", "oesophageal stricture", "barrett",
                    "esophageal varices", "oesophageal varices")),
    # Bariatric surgery: SNOMED 442338001 bypass of stomach (confirmed); Z98.84 U.
    ValueSet("bariatric", icd_prefixes=("Z98.84",), snomed=frozenset({"442338001"}),
             names=("roux-en-y", "gastric bypass", "bariatric")),
    # MI: I21.9 V, prefixes I21/I22 per brief; SNOMED 22298006 V.
    ValueSet("mi", icd_prefixes=("I21", "I22"), snomed=frozenset({"22298006"})),
    # Stroke: I63 V (cerebral infarction); I61 intracerebral haemorrhage U. SNOMED 230690007 V.
    ValueSet("stroke", icd_prefixes=("I63", "I61"), snomed=frozenset({"230690007"})),
    # Kidney (second-pass 1: coded kidney failure reads as CrCl/eGFR < 30 whatever the lab says).
    # CKD 4: N18.4 V; SNOMED 431857002 V (public CKD value sets). CKD 3 (N18.3-, 433144002,
    # 3a 700378005) is deliberately absent: CKD 3a is not kidney failure.
    ValueSet("ckd_4", icd_prefixes=("N18.4",), snomed=frozenset({"431857002"}),
             names=("chronic kidney disease stage 4", "ckd stage 4")),
    # CKD 5 / ESRD: N18.5, N18.6 V; SNOMED 433146000 CKD 5 V, 714152005 CKD 5 on dialysis V,
    # 46177005 ESRD U.
    ValueSet("kidney_failure", icd_prefixes=("N18.5", "N18.6"), snomed=frozenset({"433146000", "714152005", "46177005"}),
             names=("end stage renal disease", "end-stage renal disease", "end stage kidney disease",
                    "end-stage kidney disease", "chronic kidney disease stage 5", "ckd stage 5")),
    # Dialysis: Z99.2 dependence on renal dialysis U, Z49.- encounter for dialysis U, CKD 5 on
    # dialysis 714152005 V, and the dialysis Procedures (VSAC Dialysis Services, V).
    ValueSet("dialysis", icd_prefixes=("Z99.2", "Z49"), snomed=frozenset({"714152005"}) | DIALYSIS_SNOMED_CODES,
             names=("dialysis", "hemodialysis", "haemodialysis")),
    # Hypercalcemia E83.52 U; SNOMED 66931009 U.
    ValueSet("hypercalcemia", icd_prefixes=("E83.52",), snomed=frozenset({"66931009"}),
             names=("hypercalcemia", "hypercalcaemia")),
    # Hypocalcemia E83.51 confirmed (older FY table); SNOMED 5291005 U.
    ValueSet("hypocalcemia", icd_prefixes=("E83.51",), snomed=frozenset({"5291005"}),
             names=("hypocalcemia", "hypocalcaemia")),
    # Paget disease of bone M88- U; SNOMED 2089002 U.
    ValueSet("paget", icd_prefixes=("M88",), snomed=frozenset({"2089002"}), names=("paget disease of bone", "paget's disease of bone")),
    # Skeletal malignancy / bone metastases: C40-C41 primary bone, C79.51-C79.52 bone/marrow
    # metastasis, C90.0 multiple myeloma: all U.
    ValueSet("skeletal_malignancy", icd_prefixes=("C40", "C41", "C79.5", "C90.0"),
             names=("bone metasta*", "metastasis to bone", "metastatic bone*", "multiple myeloma")),
    # Prior skeletal radiation: no specific code found; Z92.3 (history of irradiation) U is
    # not skeletal-specific, so only names.
    ValueSet("skeletal_radiation", names=("skeletal radiation", "radiation to bone", "bone irradiation")),
    # Hyperparathyroidism E21.0-E21.3 U.
    ValueSet("hyperparathyroidism", icd_prefixes=("E21.0", "E21.1", "E21.2", "E21.3"),
             names=("hyperparathyroidism",)),
    # Pregnancy (second-pass 2): O09-O48 supervision and complications of pregnancy, Z33.1
    # pregnant state, Z34 supervision of normal pregnancy, Z3A weeks of gestation (all U);
    # SNOMED 77386006 pregnant U, 72892002 normal pregnancy V [SYN]. O00-O08 (pregnancy with
    # abortive outcome) and delivery / puerperium codes mean the pregnancy ended: next set.
    ValueSet("pregnancy", icd_prefixes=("O09", "O1", "O2", "O3", "O4", "Z33.1", "Z34", "Z3A"),
             snomed=frozenset({"77386006", "72892002"})),
    # Pregnancy ended: O00-O08, O80 and O82 delivery (ICD-10-CM has no O81), O85-O92 puerperium, Z37 outcome of delivery,
    # Z39 postpartum care (U); SNOMED 714812005 induced termination of pregnancy V [SYN].
    ValueSet("pregnancy_ended", icd_prefixes=("O0", "O80", "O82", "O85", "O86", "O87", "O88", "O89",
                                              "O90", "O91", "O92", "Z37", "Z39"),
             snomed=frozenset({"714812005"}),
             names=("termination of pregnancy", "miscarriage", "postpartum", "delivery of")),
    # Vitamin D deficiency E55.9 confirmed (older FY table); SNOMED 34713006 U.
    ValueSet("vitamin_d_deficiency", icd_prefixes=("E55.9",), snomed=frozenset({"34713006"})),
    # History of falling Z91.81 V; W19 unspecified fall V, W00-W18 the other fall external
    # causes (U, ICD-10-CM structure); SNOMED 161898004 falls, 1912002 fall V.
    ValueSet("falls", icd_prefixes=("Z91.81", "W0", "W10", "W11", "W12", "W13", "W14", "W15", "W16", "W17",
                                    "W18", "W19"), snomed=frozenset({"161898004", "1912002"})),
    # A fall with injury (AACE20 very high risk: "history of injurious falls"): no code in the
    # brief; names only. A fall dated next to a fracture also counts (rules/facts.py).
    ValueSet("injurious_fall", names=("fall with injury", "injurious fall", "fall resulting in injury",
                                      "fall-related injury", "fall related injury")),
    # Fear of falling (seed 001, second-pass 8): names only (no code found).
    ValueSet("fear_of_falling", names=("fear of falling", "fear of falls", "concern about falling",
                                       "fall anxiety", "falls anxiety")),
    # Balance / gait abnormality (EX-2): R26- U, R42 dizziness not included.
    ValueSet("gait_balance", icd_prefixes=("R26",), names=("gait abnormal*", "abnormal gait", "impaired balance", "balance problem*")),
    # Menopausal status evidence (brief 1, 8.7): all codes U.
    # Postmenopausal: Z78.0 asymptomatic menopausal state, N95.1 menopausal states,
    # E28.31- premature menopause, Z90.72- acquired absence of ovaries; SNOMED 76498008.
    ValueSet("postmenopausal", icd_prefixes=("Z78.0", "N95.1", "E28.31", "Z90.72"),
             snomed=frozenset({"76498008"}), names=("postmenopaus*", "post-menopaus*")),
    ValueSet("premenopausal", snomed=frozenset({"289903006"}), names=("premenopaus*", "pre-menopaus*")),  # U
    # Fragile skin (massage modifier): no codes in the brief; names only, plus
    # L90.5 U / D69.2 senile purpura U.
    ValueSet("fragile_skin", icd_prefixes=("D69.2",), names=("fragile skin", "skin fragility", "thin skin")),
    # Long-term systemic steroid use Z79.52 U.
    ValueSet("long_term_steroids", icd_prefixes=("Z79.52",)),
    # Tobacco: F17.2- nicotine dependence, Z72.0 tobacco use U; SNOMED smoker 77176002 /
    # 449868002 confirmed.
    ValueSet("smoker", icd_prefixes=("F17.2", "Z72.0"), snomed=frozenset({"77176002", "449868002"})),
    # Alcohol use above limits: F10.1- abuse, F10.2- dependence U; SNOMED 7200002 alcoholism U.
    ValueSet("alcohol_excess", icd_prefixes=("F10.1", "F10.2"), snomed=frozenset({"7200002"})),
    # Documented bisphosphonate intolerance (TX-3): no code; name only.
    ValueSet("bp_intolerance", names=("bisphosphonate intolerance", "intolerance to bisphosphonate",
                                     "alendronate intolerance", "bisphosphonate allergy")),
    # Transport accident external causes (V00-V99, brief 8.3 note): high-energy trauma.
    ValueSet("transport_accident", icd_prefixes=tuple(f"V{n}" for n in range(10))),
    # --- order safety (brief section 4) ---
    # SAFE-3 "acute renal impairment": N17- acute kidney failure U; SNOMED 14669001 acute renal failure U.
    ValueSet("acute_kidney_injury", icd_prefixes=("N17",), snomed=frozenset({"14669001"}),
             names=("acute kidney injury", "acute renal failure", "acute renal impairment",
                    "acute kidney failure")),
    # SAFE-7 inability to sit or stand upright for 30 minutes: no code in the brief; names only
    # (bedbound / bed-ridden U).
    ValueSet("cannot_stay_upright", names=("bedbound", "bed-bound", "bedridden", "bed-ridden", "bed bound",
                                           "unable to sit upright", "unable to stand", "unable to remain upright",
                                           "cannot sit upright", "cannot remain upright")),
    # SAFE-11 open epiphyses: no code in the brief; names only.
    ValueSet("open_epiphyses", names=("open epiphys*", "unfused epiphys*", "open growth plate*")),
    # --- second pass (second-pass.md 4, 6, 8) ---
    # Atypical femoral fracture M84.75- U (ICD-10-CM 2016+); SNOMED equivalent not found: names.
    ValueSet("atypical_femoral_fracture", icd_prefixes=("M84.75",),
             names=("atypical femoral fracture", "atypical femur fracture", "atypical fracture of femur",
                    "atypical subtrochanteric fracture")),
    # Osteonecrosis of the jaw: M87.18- osteonecrosis due to drugs (M87.180 jaw) U, as the contract
    # names it; SNOMED equivalent not found: names.
    ValueSet("osteonecrosis_jaw", icd_prefixes=("M87.18",),
             names=("osteonecrosis of the jaw", "osteonecrosis of jaw", "jaw osteonecrosis",
                    "medication-related osteonecrosis", "mronj", "bronj")),
    # Open wound (massage safety, seed 002): S-codes whose 4th character is 1 (open wound of a
    # region: S01, S11, ... S91), L89 pressure ulcer, L97 / L98.4 chronic ulcers (all U).
    ValueSet("open_wound", icd_prefixes=("S01", "S11", "S21", "S31", "S41", "S51", "S61", "S71", "S81", "S91",
                                         "L89", "L97", "L98.4"),
             names=("open wound", "pressure ulcer", "pressure injury", "skin ulcer", "leg ulcer",
                    "wound dehiscence")),
    # Active skin or soft-tissue infection: L00-L08 U, A46 erysipelas U.
    ValueSet("skin_infection", icd_prefixes=("L00", "L01", "L02", "L03", "L04", "L05", "L08", "A46"),
             names=("cellulitis", "skin abscess", "cutaneous abscess", "erysipelas", "skin infection", "soft tissue infection",
                    "soft-tissue infection", "impetigo")),
    # Kyphosis (positioning caution): M40.0-M40.2 U; SNOMED 414564002 U.
    ValueSet("kyphosis", icd_prefixes=("M40.0", "M40.1", "M40.2"), snomed=frozenset({"414564002"}),
             names=("kyphosis", "hyperkyphosis", "dowager's hump")),
    # Low calcium intake or low weight (dietitian referral, second-pass 8): E58 dietary calcium
    # deficiency, R63.6 underweight, E40-E46 malnutrition (U).
    ValueSet("low_intake_or_weight", icd_prefixes=("E58", "R63.6", "E40", "E41", "E42", "E43", "E44", "E45", "E46"),
             names=("low calcium intake", "inadequate calcium intake", "dietary calcium deficiency",
                    "underweight", "malnutrition")),
    # Liver disease (an explanation for a raised alkaline phosphatase): K70-K77 U.
    ValueSet("liver_disease", icd_prefixes=("K70", "K71", "K72", "K73", "K74", "K75", "K76", "K77"),
             names=("cirrhosis", "hepatitis", "cholestasis", "liver disease")),
)}


def condition_groups(concept: Any) -> list[str]:
    """Names of the condition value sets a concept belongs to."""
    parts = _concept_parts(concept)
    if not any(parts):
        return []
    if len(parts[2]) <= _CACHE_TEXT_MAX:
        return list(_groups_cached(parts))
    return list(_groups(parts))


def _groups(parts: tuple[tuple[str, ...], frozenset[str], str]) -> tuple[str, ...]:
    icd, snomed, text = parts
    # Most of a problem list is in no value set: three checks rule it out.
    icd_all, snomed_all, names_all = _value_set_union()
    if not (any(c.startswith(icd_all) for c in icd) or not snomed.isdisjoint(snomed_all)
            or any_name_in(names_all, text)):
        return ()
    return tuple(name for name, vs in CONDITION_VALUE_SETS.items() if vs._matches(*parts))


# Long charts repeat the same codes: remember recent answers.
_groups_cached = functools.lru_cache(maxsize=2048)(_groups)


@functools.lru_cache(maxsize=1)
def _value_set_union() -> tuple[tuple[str, ...], frozenset[str], tuple[str, ...]]:
    sets = CONDITION_VALUE_SETS.values()
    return (tuple(p for vs in sets for p in _norm_prefixes(vs.icd_prefixes)),
            frozenset(c for vs in sets for c in vs.snomed),
            tuple(n for vs in sets for n in vs.names))


# ---------------------------------------------------------------------------
# Fractures (brief 1, 8.3, 8.4)
# ---------------------------------------------------------------------------

HIP, VERTEBRAL, WRIST, HUMERUS, PELVIS, OTHER = "hip", "vertebral", "wrist/forearm", "humerus", "pelvis", "other"
FRACTURE_SITES = (HIP, VERTEBRAL, WRIST, HUMERUS, PELVIS, OTHER)


@dataclass(frozen=True)
class FractureCode:
    site: str
    fragility_specific: bool  # M80.-, osteoporotic-fracture SNOMED, Z87.310
    code: str                 # the matching code (for card facts)


# M80.0-/M80.8- (osteoporosis with current pathological fracture): the 5th
# character gives the site (M80.0[x]): 1 shoulder, 2 humerus, 3 forearm,
# 4 hand, 5 femur, 6 lower leg, 7 ankle/foot, 8 vertebra, A other, B pelvis.
# V for M80.0 samples in the brief; site letters from the ICD-10-CM structure.
_M80_SITE = {"1": HUMERUS, "2": HUMERUS, "3": WRIST, "5": HIP, "8": VERTEBRAL, "B": PELVIS}

# Injury S-codes (any mechanism: "probable" fragility only in patients >=50).
_S_CODE_SITES: tuple[tuple[str, str], ...] = (
    ("S720", HIP), ("S721", HIP), ("S722", HIP),            # V (samples)
    ("S220", VERTEBRAL), ("S320", VERTEBRAL),               # V (samples)
    ("S525", WRIST),                                        # V (samples)
    ("S422", HUMERUS),                                      # V (samples)
    ("S321", PELVIS), ("S323", PELVIS), ("S324", PELVIS),   # U: sacrum, ilium, acetabulum,
    ("S325", PELVIS), ("S328", PELVIS),                     # U: pubis, other pelvis
)

# SNOMED fracture concepts: code -> (site, fragility specific). V unless noted.
_SNOMED_FRACTURES: dict[str, tuple[str, bool]] = {
    "443165006": (OTHER, True),           # Osteoporotic fracture of bone
    "11311601000119109": (VERTEBRAL, True),
    "203450003": (VERTEBRAL, True), "203451004": (VERTEBRAL, True), "203452006": (VERTEBRAL, True),
    "240198002": (VERTEBRAL, True),       # Osteoporotic vertebral collapse
    "431031001": (HIP, True), "704334005": (HIP, True),
    "704336007": (WRIST, True),           # Osteoporotic fracture of radius
    "704335006": (HUMERUS, True),
    "5913000": (HIP, False), "359820003": (HIP, False),  # Fracture of neck of femur (any mechanism)
}


SNOMED_FRACTURE_CODES = frozenset(_SNOMED_FRACTURES)


def icd_display(code: str) -> str:
    """Normalised ICD-10-CM code back in its dotted form (M8008XA -> M80.08XA)."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def classify_fracture(concept: Any) -> FractureCode | None:
    """Site and fragility-specificity of a fracture code, or None."""
    pairs = codings(concept)
    if not pairs:
        return None
    for code in (_icd_norm(c) for system, c in pairs if system == ICD10CM):
        if code.startswith(("M800", "M808")):
            site = _M80_SITE.get(code[4:5], OTHER)
            return FractureCode(site, True, icd_display(code))
        if code.startswith("Z87310"):  # V: personal history of (healed) osteoporosis fracture
            return FractureCode(OTHER, True, icd_display(code))
        for prefix, site in _S_CODE_SITES:
            if code.startswith(prefix):
                return FractureCode(site, False, icd_display(code))
    for code in (c for system, c in pairs if system == SNOMED):
        if code in _SNOMED_FRACTURES:
            site, specific = _SNOMED_FRACTURES[code]
            return FractureCode(site, specific, code)
    return None


# ---------------------------------------------------------------------------
# Drugs (brief 3, 8.6 and addendum): agent -> class, codes, names
# ---------------------------------------------------------------------------

ORAL_BP, IV_BP, DENOSUMAB, SERM, PTH_ANALOG, ROMOSOZUMAB = (
    "oral_bp", "iv_bp", "denosumab", "serm", "pth_analog", "romosozumab")
CALCIUM, VITAMIN_D = "calcium", "vitamin_d"
ANTICOAGULANT, CORTICOSTEROID, PPI = "anticoagulant", "corticosteroid", "ppi"
ESTROGEN = "estrogen"  # menopausal hormone therapy: bone-active (second-pass 4), not an osteoporosis drug

ANTIRESORPTIVE_CLASSES = frozenset({ORAL_BP, IV_BP, DENOSUMAB, SERM})
BISPHOSPHONATE_CLASSES = frozenset({ORAL_BP, IV_BP})
ANABOLIC_CLASSES = frozenset({PTH_ANALOG, ROMOSOZUMAB})
OSTEOPOROSIS_DRUG_CLASSES = ANTIRESORPTIVE_CLASSES | ANABOLIC_CLASSES
# Bone-active therapy: no "start a drug" card beside any of these (second-pass 4).
BONE_ACTIVE_CLASSES = OSTEOPOROSIS_DRUG_CLASSES | {ESTROGEN}
SUPPLEMENT_CLASSES = frozenset({CALCIUM, VITAMIN_D})


@dataclass(frozen=True)
class Agent:
    name: str                       # agent id, e.g. "alendronate"
    drug_class: str
    rxnorm: frozenset[str] = frozenset()      # ingredient + product codes
    names: tuple[str, ...] = ()               # lower-case generic/brand fragments
    oncology_rxnorm: frozenset[str] = frozenset()  # oncology products: exposure, not a regimen
    oncology_names: tuple[str, ...] = ()
    dosing_interval_days: int = 1   # one dose covers this many days (for "current" and exposure)
    label_setid: str = ""           # DailyMed SPL set id of the label the cards cite (second-pass 9)
    label_brand: str = ""           # the label's brand name, for card text


AGENTS: dict[str, Agent] = {a.name: a for a in (
    # IN 46041 V; 70 mg tab SCD 904431 V (corrected); Fosamax 70 mg SBD 904433; 10 mg 904419;
    # 904420 V? (Synthea display). Fosamax Plus D also contains cholecalciferol (name match finds both).
    Agent("alendronate", ORAL_BP, frozenset({"46041", "904431", "904433", "904419", "904420"}),
          ("alendron*", "fosamax", "binosto"), dosing_interval_days=7,
          # Fosamax (Organon) SPL set id, V (openFDA NDC 78206-135)
          label_setid="14e931fd-2c5f-4d90-b7db-5980706f4a56", label_brand="Fosamax"),
    # IN 73056 V; 35 mg SCD 905024, Actonel 905026, delayed-release 1020064 (confirmed).
    Agent("risedronate", ORAL_BP, frozenset({"73056", "905024", "905026", "1020064"}),
          ("risedron*", "actonel", "atelvia"), dosing_interval_days=7,
          # Actonel's own set id was not found; risedronate 35 mg (Apotex) label, V (openFDA NDC 60505-3096)
          label_setid="b90f2e5b-10b8-29a7-0360-31bd0dae0ec2", label_brand="risedronate"),
    # IN 115264 V; 150 mg SCD 904932, Boniva 904934 (confirmed).
    Agent("ibandronate", ORAL_BP, frozenset({"115264", "904932", "904934"}),
          ("ibandron*", "boniva"), dosing_interval_days=30,
          # Boniva's own set id was not found; ibandronate 150 mg (Aurobindo) label, V (openFDA NDC 65862-237)
          label_setid="86c0b4ae-5e38-4efe-88af-50ac560e294f", label_brand="ibandronate"),
    # IN 77655 V; 5 mg/100 mL SCD 705824, Reclast 705875 (confirmed).
    # Oncology 4 mg/5 mL 351114 and 4 mg/100 mL 1114085 (Zometa-type).
    Agent("zoledronic_acid", IV_BP, frozenset({"77655", "705824", "705875"}),
          ("zoledron*", "reclast", "aclasta"),
          oncology_rxnorm=frozenset({"351114", "1114085"}), oncology_names=("zometa",),
          dosing_interval_days=365,
          # Reclast SPL set id, V (openFDA NDC 66758-155, rxcui 705824/705875)
          label_setid="5a9b3737-9ce6-4a89-b76e-6aab79eba9cf", label_brand="Reclast"),
    # IN 993449 U; 60 mg/mL syringe SCD 993452, Prolia 993456 (confirmed).
    # Names: Prolia; Jubbonti (biosimilar, in brief). Xgeva 120 mg is oncology (and Wyost, U).
    Agent("denosumab", DENOSUMAB, frozenset({"993449", "993452", "993456"}),
          ("denosumab", "prolia", "jubbonti"),
          oncology_names=("xgeva", "wyost"), dosing_interval_days=182,
          # Prolia SPL set id, V (FDALabel SPL for NDC 55513-710, 2026 version with the 2024 boxed warning)
          label_setid="49e5afe9-a0c7-40c4-af9f-f287a80c5c88", label_brand="Prolia"),
    # IN 72143 V; 60 mg SCD 1490065, Evista 1490067 (confirmed).
    Agent("raloxifene", SERM, frozenset({"72143", "1490065", "1490067"}), ("raloxifen*", "evista"),
          # Evista SPL set id, V (openFDA NDC 0002-4184)
          label_setid="fcaaa6dc-74e8-4fb8-800c-5574bf0f8de9", label_brand="Evista"),
    # Bazedoxifene (with conjugated estrogens: Duavee; alone: Conbriza, EU): names only, codes not found.
    Agent("bazedoxifene", SERM, frozenset(), ("bazedoxifene", "duavee", "conbriza")),
    # Ingredient not found; pen SCD 1435115, Forteo 1435117 (confirmed); Bonsity SBD 2716408
    # V (openFDA NDC 47781-852, rxcui 1435115/2716408).
    Agent("teriparatide", PTH_ANALOG, frozenset({"1435115", "1435117", "2716408"}), ("teriparatide", "forteo", "bonsity"),
          # Forteo SPL set id, V (openFDA NDC 0002-8400)
          label_setid="aae667c5-381f-4f92-93df-2ed6158d07b0", label_brand="Forteo"),
    # IN 1921069 / pen 1921082 / Tymlos 1921083: weak (one source).
    # Tymlos SPL set id not found in the public sources seen: cards link the DailyMed search for it.
    Agent("abaloparatide", PTH_ANALOG, frozenset({"1921069", "1921082", "1921083"}), ("abaloparatide", "tymlos"),
          label_brand="Tymlos"),
    # No RxNorm code found (RxNav not reachable; openFDA and public code lists searched): names only.
    Agent("romosozumab", ROMOSOZUMAB, frozenset(), ("romosozumab", "evenity"), dosing_interval_days=30,
          # Evenity SPL set id, V? (fda.report DailyMed mirror of the Amgen label)
          label_setid="471baba2-7154-4488-9891-0db2f46791e7", label_brand="Evenity"),
    # Menopausal hormone therapy (second-pass 4): estradiol IN 4083 U, conjugated estrogens 4099 U;
    # names for the common products. Vaginal (local) estrogen is not bone-active: NON_SYSTEMIC_ESTROGEN.
    Agent("estrogen", ESTROGEN, frozenset({"4083", "4099"}),
          ("estradiol", "conjugated estrogen*", "esterified estrogen*", "estropipate", "premarin", "prempro",
           "premphase", "estrace", "activella", "climara", "vivelle", "divigel", "estrogel", "evamist",
           "menostar", "femring", "bijuva", "angeliq", "duavee")),
    # calcium 1895 V, calcium carbonate 1897 V, citrate 47613 confirmed; carbonate 1250 mg
    # (500 mg elemental) SCD 282465 and 1500 mg SCD 237420 confirmed. No bare "calcium" name:
    # it would match salts such as "atorvastatin calcium".
    Agent("calcium", CALCIUM, frozenset({"1895", "1897", "47613", "282465", "237420"}),
          ("calcium carbonate", "calcium citrate", "calcium gluconate", "calcium lactate",
           "caltrate", "os-cal", "oscal", "citracal", "tums")),
    # cholecalciferol 2418 V, vitamin D 11253 V, ergocalciferol 4018 (corrected);
    # cholecalciferol 1000 UNT capsule SCD 245500 confirmed. Calcitriol is not a supplement.
    Agent("vitamin_d", VITAMIN_D, frozenset({"2418", "11253", "4018", "245500"}),
          ("cholecalciferol", "ergocalciferol", "vitamin d", "vitamin d3", "vitamin d2",
           "fosamax plus d")),
    # Massage modifiers and calcium-citrate choice: matched by name only (no codes in the brief).
    Agent("anticoagulant", ANTICOAGULANT, frozenset(),
          ("warfarin", "coumadin", "apixaban", "eliquis", "rivaroxaban", "xarelto", "dabigatran",
           "pradaxa", "edoxaban", "savaysa", "enoxaparin", "lovenox", "dalteparin", "fragmin",
           "fondaparinux", "heparin")),
    Agent("corticosteroid", CORTICOSTEROID, frozenset(),
          ("prednisone", "prednisolone", "methylprednisolone", "medrol", "dexamethasone",
           "hydrocortisone", "cortisone", "deflazacort", "betamethasone", "triamcinolone")),
    Agent("ppi", PPI, frozenset(),
          ("omeprazole", "esomeprazole", "lansoprazole", "dexlansoprazole", "pantoprazole",
           "rabeprazole", "prilosec", "nexium", "prevacid", "protonix", "aciphex")),
)}

# Non-systemic forms: a steroid cream or inhaler is not a "long-term corticosteroid".
NON_SYSTEMIC_WORDS = ("inhal*", "topical", "cream", "ointment", "lotion", "nasal", "ophthalmic",
                      "otic", "eye drop*", "gel", "foam", "rectal", "enema", "shampoo", "intra-articular")
# Local (vaginal) estrogen does not protect bone (transdermal gels and patches do).
NON_SYSTEMIC_ESTROGEN = ("vaginal*", "intravaginal", "cream", "estring", "vagifem", "imvexxy", "yuvafem")

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

_RXNORM_INDEX: dict[str, str] = {}
for _agent in AGENTS.values():
    for _code in _agent.rxnorm | _agent.oncology_rxnorm:
        _RXNORM_INDEX[_code] = _agent.name


@dataclass(frozen=True)
class DrugMatch:
    agents: tuple[str, ...]  # agent ids, e.g. ("alendronate", "vitamin_d") for Fosamax Plus D
    oncology: bool           # Xgeva 120 mg / Zometa 4 mg: antiresorptive exposure, not a regimen

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(AGENTS[a].drug_class for a in self.agents)


def classify_medication(concept: Any) -> DrugMatch:
    """Agents in a medication concept: RxNorm codes first, then names."""
    rxnorm = tuple(code for system, code in codings(concept) if system == RXNORM)
    text = concept_text(concept)
    # Long charts repeat the same few drugs: remember recent answers (short texts only,
    # so the cache stays small).
    if len(text) <= _CACHE_TEXT_MAX:
        return _classify_medication_cached(rxnorm, text)
    return _classify_medication(rxnorm, text)


def _classify_medication(rxnorm: tuple[str, ...], text: str) -> DrugMatch:
    agents: list[str] = []
    oncology = False
    for code in rxnorm:
        agent = _RXNORM_INDEX.get(code)
        if agent and agent not in agents:
            agents.append(agent)
            oncology = oncology or code in AGENTS[agent].oncology_rxnorm
    if text:
        # Most drugs on a chart are none of ours: one search rules them out.
        if any_name_in(_all_agent_names(), text):
            for agent in AGENTS.values():
                if any_name_in(agent.names + agent.oncology_names, text):
                    if agent.name not in agents:
                        agents.append(agent.name)
        for name in agents:
            agent = AGENTS[name]
            if any_name_in(agent.oncology_names, text):
                oncology = True
            # Denosumab 120 mg is the oncology dose (Xgeva-type) whatever the brand.
            if agent.drug_class == DENOSUMAB and re.search(r"(?<![\d.])120\s*mg", text):
                oncology = True
    # A systemic-steroid match on a non-systemic form is dropped.
    if "corticosteroid" in agents and any_name_in(NON_SYSTEMIC_WORDS, text):
        agents.remove("corticosteroid")
    if "estrogen" in agents and any_name_in(NON_SYSTEMIC_ESTROGEN, text):
        agents.remove("estrogen")
    return DrugMatch(tuple(agents), oncology)


_CACHE_TEXT_MAX = 300  # longer concept texts are classified but not cached
_classify_medication_cached = functools.lru_cache(maxsize=2048)(_classify_medication)


@functools.lru_cache(maxsize=1)
def _all_agent_names() -> tuple[str, ...]:
    return tuple(n for agent in AGENTS.values() for n in agent.names + agent.oncology_names)


# ---------------------------------------------------------------------------
# Orders: DXA, massage, physical therapy (brief 8.4, 8.5)
# ---------------------------------------------------------------------------

# DXA as an ordered service: CPT 77080/77081 V?, 77085/77086 U (brief asks to accept);
# LOINC 38268-9 DXA views V; SNOMED 312681000 V, 241686001 V (technique).
DXA_NAMES = ("dxa", "dexa", "bone density", "bone densitometry", "absorptiometry")
MASSAGE_CPT = frozenset({"97124"})            # U
MASSAGE_NUCC = frozenset({"225700000X"})      # V: Massage Therapist
# Hands-on manual therapy (second-pass 6): CPT 97140 manual therapy techniques (mobilisation,
# manipulation), 98940-98942 chiropractic spinal manipulation, 98943 extraspinal, 98925-98929
# osteopathic manipulative treatment (all U); NUCC 111N00000X chiropractor U; SNOMED referral to
# chiropractor 308449000 / osteopath 308450000 V (VSAC Referral 2.16.840.1.113883.3.464.1003.101.12.1046).
MANUAL_THERAPY_CPT = frozenset({"97140", "98940", "98941", "98942", "98943",
                                "98925", "98926", "98927", "98928", "98929"})
SPINAL_MANIPULATION_CPT = frozenset({"98940", "98941", "98942", "98925", "98926", "98927", "98928", "98929"})
MANUAL_THERAPY_NUCC = frozenset({"111N00000X"})
MANUAL_THERAPY_SNOMED = frozenset({"308449000", "308450000"})
MANUAL_THERAPY_NAMES = ("manual therapy", "joint mobili*", "mobilisation", "mobilization", "manipulat*",
                        "chiropract*", "osteopathic", "spinal adjustment")
PT_REFERRAL_SNOMED = frozenset({"444831000124102", "306170007", "308447003", "416790000"})  # V
PT_CPT = frozenset({"97161", "97162", "97163", "97164", "97110", "97112", "97116"})  # V / U
PT_NUCC = frozenset({"225100000X", "225200000X"})  # U / V
PT_NAMES = ("physical therap*", "physiotherap*")


def is_dxa_concept(concept: Any) -> bool:
    return (any(c in DXA_CPT_CODES for c in codes_in(concept, CPT))
            or any(c in DXA_SNOMED_CODES for c in codes_in(concept, SNOMED))
            or any(c in DXA_STUDY_CODES for c in codes_in(concept, LOINC))
            or any_name_in(DXA_NAMES, concept_text(concept)))


def is_massage_concept(concept: Any) -> bool:
    return (any(c in MASSAGE_CPT for c in codes_in(concept, CPT))
            or any(c in MASSAGE_NUCC for c in codes_in(concept, NUCC))
            or name_in("massage*", concept_text(concept)))


def is_manual_therapy_concept(concept: Any) -> bool:
    return (any(c in MANUAL_THERAPY_CPT for c in codes_in(concept, CPT))
            or any(c in MANUAL_THERAPY_NUCC for c in codes_in(concept, NUCC))
            or any(c in MANUAL_THERAPY_SNOMED for c in codes_in(concept, SNOMED))
            or any_name_in(MANUAL_THERAPY_NAMES, concept_text(concept)))


def is_dialysis_procedure(concept: Any) -> bool:
    return (any(c in DIALYSIS_CPT_CODES for c in codes_in(concept, CPT))
            or any(c in DIALYSIS_SNOMED_CODES for c in codes_in(concept, SNOMED)))


def is_surgery(code: Any, category: Any) -> bool:
    """A Procedure that reads as an operation (massage safety: post-surgical sites)."""
    categories = category if isinstance(category, list) else [category]
    if any(c in SURGICAL_CATEGORY_SNOMED for cat in categories for c in codes_in(cat, SNOMED)):
        return True
    text = concept_text(code)
    if any_name_in(NOT_SURGERY_NAMES, text):
        return False
    return any_name_in(SURGERY_NAMES, text) or SURGERY_SUFFIXES.search(text) is not None


def is_pt_concept(concept: Any) -> bool:
    return (any(c in PT_REFERRAL_SNOMED for c in codes_in(concept, SNOMED))
            or any(c in PT_CPT for c in codes_in(concept, CPT))
            or any(c in PT_NUCC for c in codes_in(concept, NUCC))
            or any_name_in(PT_NAMES, concept_text(concept)))


# ---------------------------------------------------------------------------
# Observation values
# ---------------------------------------------------------------------------

# Smoking status values meaning "current smoker": 77176002 / 449868002 confirmed;
# light / heavy / some-day smoker 428061000124105 / 428071000124103 / 428041000124106 U;
# cigarette smoker 65568007 U.
CURRENT_SMOKER_SNOMED = frozenset({"77176002", "449868002", "428061000124105",
                                   "428071000124103", "428041000124106", "65568007"})
# Non-smoker answers, so "never smoker" is not read as smoker by text: 8517006 ex-smoker,
# 266919005 never smoked (U).
NON_SMOKER_SNOMED = frozenset({"8517006", "266919005", "266927001"})

FRAX_TEXT = "frax"


# ---------------------------------------------------------------------------
# Care already on record (second-pass section 7: an info card only when
# something is to be done). Read from the value-set files, not from tables
# here: each kind is the id of its value set.
# ---------------------------------------------------------------------------

PT_CARE = "order-physical-therapy"
EXERCISE_CARE = "order-exercise-programme"
OT_CARE = "order-occupational-therapy"
FALL_ASSESSMENT_CARE = "order-fall-risk-assessment"
SMOKING_CESSATION_CARE = "order-smoking-cessation"
DIETITIAN_CARE = "order-dietitian"
DXA_CARE = "order-dxa"
CARE_KINDS = (PT_CARE, EXERCISE_CARE, OT_CARE, FALL_ASSESSMENT_CARE, SMOKING_CESSATION_CARE, DIETITIAN_CARE,
              DXA_CARE)
# Visits (Encounter.type) that count: the prefetch asks only for these.
VISIT_CARE_KINDS = (PT_CARE, EXERCISE_CARE, OT_CARE)


def care_kinds(*concepts: Any) -> frozenset[str]:
    """The CARE_KINDS a ServiceRequest, Procedure or Encounter records, by code
    or, failing that, by the value set's text-match names."""
    from cds_service.fhir import valuesets

    terms = valuesets.active()
    found: set[str] = set()
    for concept in concepts:
        found |= terms.concepts_in(concept) & set(CARE_KINDS)
        text = concept_text(concept)
        if text:
            found |= {kind for kind in CARE_KINDS if kind not in found and any_name_in(terms.names(kind), text)}
    return frozenset(found)


def visit_type_codes() -> tuple[str, ...]:
    """`system|code` of the visit kinds (SNOMED CT and CPT: what Encounter.type carries)."""
    from cds_service.fhir import valuesets

    terms = valuesets.active()
    return tuple(sorted(f"{system}|{code}" for kind in VISIT_CARE_KINDS for system in (SNOMED, CPT)
                        for code in terms.codes(kind, system)))
