"""Clinical thresholds the rules use, as one frozen value.

Defaults are the brief's numbers (../shared/clinical/brief.md). The ones the
brief calls a "project choice" or "design choice", and a few a site may want
to tune, can also be set from the environment (cds_service.config, names in
ENV_BACKED); `ClinicalSettings.from_settings` copies them over.
Label-derived limits (eGFR cut-offs, 12 romosozumab doses, 24 months of
PTH analog) are not environment settings on purpose: they are not local choices.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ClinicalSettings:
    # --- fractures (brief 1) ---
    fresh_fracture_weeks: int = 12        # MASS-1 / exercise safety; project choice
    recent_fracture_months: int = 12      # VHR "fracture within past 12 months" (AACE20)
    probable_fragility_min_age: int = 50  # S-code fracture counts as probable fragility at >= this age
    trauma_link_days: int = 3             # a transport-accident code within this many days marks an S-code fracture traumatic
    fracture_event_window_days: int = 30  # fracture records of one site this close together are one event; project choice
    # --- risk (brief 2) ---
    frax_max_age_months: int = 24         # older FRAX is stale (brief 1)
    frax_mof_threshold: float = 20.0      # BHOF22 treatment threshold, percent
    frax_hip_threshold: float = 3.0
    frax_vhr_mof: float = 30.0            # AACE20 VHR, percent (">")
    frax_vhr_hip: float = 4.5
    vhr_t_score: float = -3.0             # AACE20 VHR: T-score < -3.0
    vhr_include_falls: bool = True        # AACE20 injurious falls make VHR (never a positive screen alone: second-pass 5)
    vhr_profile: str = "us"               # "us" (AACE20 + seed) or "nogg" (adds NOGG22 criteria)
    # --- labs (brief 1, TX-1a) ---
    lab_max_age_months: int = 12          # eGFR, 25OHD, baseline labs
    calcium_max_age_months: int = 6       # calcium before an antiresorptive injection
    albumin_pair_days: int = 30           # albumin within this many days of a calcium corrects it
    calcium_lower_mg_dl: float = 8.5      # SAFE-4 default lower limit
    calcium_upper_mg_dl: float = 10.5     # TX-7 suppress calcium above this
    ionized_calcium_lower_mmol_l: float = 1.12  # SAFE-4 with ionized calcium (LOINC 1995-0, brief 8.2) when
    #                                             the result gives no reference range: usual adult lower limit
    ionized_calcium_upper_mmol_l: float = 1.32  # a high ionized calcium (SAFE-11 with a PTH analog) when the
    #                                             result gives no reference range: usual adult upper limit
    vitamin_d_deficient_ng_ml: float = 20.0  # TX-8 warning / SAFE-5
    vitamin_d_target_ng_ml: float = 30.0     # TX-8 info (AACE20 target)
    # --- drug safety (brief 4) ---
    egfr_alendronate_min: float = 35.0    # SAFE-1
    egfr_risedronate_min: float = 30.0    # SAFE-2 (risedronate, ibandronate)
    egfr_zoledronate_min: float = 35.0    # SAFE-3
    egfr_denosumab_ckd: float = 30.0      # SAFE-6
    mi_stroke_window_months: int = 12     # SAFE-8
    romo_max_doses: int = 12              # SAFE-9
    pth_max_months: int = 24              # SAFE-10
    anabolic_followon_months: int = 3     # SAFE-12
    dmab_interval_months: int = 6         # SAFE-13b due
    dmab_grace_weeks: int = 4             # SAFE-13 overdue after interval + grace
    bp_after_dmab_transition_months: int = 5  # SAFE-15 overlap exemption
    bp_holiday_years: int = 5             # HOLIDAY-1 oral BP
    zoledronate_holiday_doses: int = 3    # HOLIDAY-1 IV BP
    bp_review_years: int = 10             # HOLIDAY-1: oral BP this long -> duration review, hip T-scores or not (AACE20: 6-10 years at high risk)
    zoledronate_review_doses: int = 6     # HOLIDAY-1: IV BP doses -> duration review (AACE20: 6 yearly doses at high risk)
    holiday_bmd_loss_t: float = 0.3       # drop in T-score ending a holiday; project choice, clinician to confirm
    long_term_corticosteroid_days: int = 90  # active systemic steroid this long = long-term (NOGG: 3 months)
    # --- monitoring (brief 5) ---
    dxa_interval_months: int = 24         # MON-1 (seed: every 2 years)
    dxa_duplicate_months: int = 12        # MON-2 (seed: not more often than annually); open question 4
    osteopenia_dxa_years: tuple[int, int, int] = (2, 3, 5)  # MON-6 for T <= -2.0 / -1.5..-1.99 / > -1.5; design choice
    screening_age_women: int = 65         # MON-3 (USPSTF18)
    # --- exercise / falls (brief 6) ---
    fall_prevention_min_age: int = 65     # FALL-1
    # --- second pass (../shared/clinical/second-pass.md; "(setting)" there = environment here) ---
    kidney_lab_max_age_months: int = 12   # s1: latest creatinine / eGFR / weight within this; older = unknown
    kidney_failure_egfr: float = 15.0     # s2: below this (CKD 5) C-SAFE-DMAB-CKD is critical, 15-29 warning
    predose_lab_days: int = 90            # s2 C-SAFE-PREDOSE-LABS: kidney function and calcium this recent
    zoledronate_min_interval_months: int = 11  # s3 C-SAFE-DOSE-INTERVAL
    dmab_min_interval_months: int = 5     # s3 C-SAFE-DOSE-INTERVAL (5.5 months is fine)
    romo_min_interval_weeks: int = 3      # s3 C-SAFE-DOSE-INTERVAL (monthly drug)
    ibandronate_iv_min_interval_weeks: int = 11  # s3 C-SAFE-DOSE-INTERVAL (IV ibandronate, every 3 months); project choice, clinician to confirm
    pregnancy_months: int = 9             # s2: a positive test (or coded pregnancy) this recent is current
    tx_failure_months: int = 12           # s4 C-TX-FAILURE: fracture this long after the antiresorptive started
    tx_failure_window_months: int = 24    # s4 C-TX-FAILURE: a single fracture counts only when NEW (this recent)
    giop_min_mg_day: float = 2.5          # s5 C-GIOP (ACR22): prednisone-equivalent dose ...
    giop_high_mg_day: float = 7.5         # ... and the dose that makes "no DXA" a warning
    giop_min_age: int = 40                # s5 C-GIOP population (ACR22 adults >= 40)
    injurious_fall_link_days: int = 7     # s5: a fall coded this close to a fracture is a fall-related fracture; design choice
    recent_surgery_weeks: int = 12        # s6 massage: surgery this recent is a post-surgical site
    alp_upper_u_l: float = 120.0          # s2: ALP upper limit when the result carries no reference range; U
    fes_i_concern: float = 23.0           # s8: FES-I >= 23 (Short FES-I >= 11) = moderate/high concern (Delbaere 2010; U)
    short_fes_i_concern: float = 11.0
    low_bmi: float = 20.0                 # s8: dietitian referral below this BMI (NOF low body weight; U)
    done_within_months: int = 12          # s7: care on record this recent is done (its info card stays quiet)
    refill_gap_days: int = 30             # s7 C-MON-ONTX: an oral or daily drug's supply ran out this long ago; design choice

    @classmethod
    def from_settings(cls, settings: Any) -> "ClinicalSettings":
        """Take every field that the service Settings also has (env-backed)."""
        values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(cls)
                  if hasattr(settings, f.name)}
        if "osteopenia_dxa_years" in values:
            values["osteopenia_dxa_years"] = tuple(int(v) for v in values["osteopenia_dxa_years"])
        return cls(**values)


DEFAULT = ClinicalSettings()
