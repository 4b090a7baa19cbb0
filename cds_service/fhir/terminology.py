"""Codes the service recognises, in one place (brief section 8).

Every code here comes from ../shared/clinical/brief.md section 8 and its
addendum; the brief's verification mark (V, V?, U) is kept in a comment where
the code is weakly sourced, so a reviewer sees which codes to confirm.
"""

from __future__ import annotations

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

# Every Observation code the rules read; the prefetch templates ask for these.
OBSERVATION_CODES: tuple[str, ...] = tuple(sorted(
    set(DXA_T_SCORE_SITES) | set(DXA_Z_SCORE_SITES) | DXA_BMD_CODES | DXA_STUDY_CODES
    | {FRAX_MOF, FRAX_HIP} | EGFR_CODES | CALCIUM_TOTAL_CODES | CALCIUM_IONIZED_CODES
    | ALBUMIN_CODES | VITAMIN_D_25OH_CODES | PTH_CODES | {SMOKING_STATUS}
    | FALL_RISK_ASSESSMENT_CODES
))

# --- Procedures on file (brief 1, 8.4, 8.5) --------------------------------
DXA_CPT_CODES = frozenset({"77080", "77081", "77085", "77086"})
DXA_SNOMED_CODES = frozenset({"312681000", "241686001"})
BARIATRIC_SNOMED_CODES = frozenset({"442338001"})
