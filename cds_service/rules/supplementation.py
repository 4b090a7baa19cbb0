"""Calcium and vitamin D (brief TX-7, TX-8; card family b).

Implemented: TX-7 -> C-SUPP-CAVD on patient-view. The order-hook variant
(README addition) is written and tested but not yet registered.
To write here: TX-8 C-VITD-LOW (warning < 20 ng/mL, info 20-29; settings
vitamin_d_deficient_ng_ml / vitamin_d_target_ng_ml) and SAFE-5 on order hooks.
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import PatientRecord
from cds_service.rules.base import Finding, rule
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, assess
from cds_service.rules.settings import ClinicalSettings


def _calcium_contraindication(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """TX-7: no calcium when (corrected) calcium is above the upper limit or
    hypercalcemia is on the problem list."""
    ca = (record.lab("calcium_corrected", settings.lab_max_age_months)
          or record.lab("calcium", settings.lab_max_age_months))
    if ca and ca.value > settings.calcium_upper_mg_dl:
        return ca.fact()
    hits = record.condition_hits("hypercalcemia")
    if hits:
        return f"Hypercalcemia on the problem list ({hits[0].code})"
    return None


def _supplement_finding(record: PatientRecord, settings: ClinicalSettings, why: list[str]) -> list[Finding]:
    calcium = record.medications.get("calcium")
    vitamin_d = record.medications.get("vitamin_d")
    need_ca = not (calcium and calcium.active)
    need_d = not (vitamin_d and vitamin_d.active)
    if not (need_ca or need_d):
        return []
    facts = list(why)
    ca_block = _calcium_contraindication(record, settings) if need_ca else None
    if ca_block:
        facts.append(f"{ca_block}: calcium supplement not suggested")
        need_ca = False
    if not (need_ca or need_d):
        return []
    ppi = record.medications.get("ppi")
    citrate = bool(ppi and ppi.active)  # TX-7: calcium citrate if on a PPI (carbonate needs acid)
    if citrate:
        facts.append("On a proton pump inhibitor: calcium citrate is absorbed without stomach acid")
    if need_ca and need_d:
        key = "calcium-citrate-and-vitamin-d" if citrate else "calcium-carbonate-and-vitamin-d"
        missing = "calcium and vitamin D"
    elif need_ca:
        key = "calcium-citrate" if citrate else "calcium-carbonate"
        missing = "calcium"
        facts.append("Active vitamin D supplement on file")
    else:
        key = "vitamin-d"
        missing = "vitamin D"
        if calcium and calcium.active:
            facts.append("Active calcium supplement on file")
    return [Finding("C-SUPP-CAVD", facts=tuple(facts), variables={"missing": missing}, suggestions=(key,))]


@rule("patient-view")
def calcium_vitamin_d(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SUPP-CAVD (info), TX-7: osteoporosis, osteopenia, a fragility fracture
    or any osteoporosis drug, and no active calcium and vitamin D -> suggest
    calcium carbonate 500 mg elemental BID (citrate on a PPI) and
    cholecalciferol 1000 IU daily (SEED; BHOF22). Calcium part suppressed with
    corrected Ca > upper limit or hypercalcemia."""
    a = assess(record, settings)
    why: list[str] = []
    if a.diagnosis in (OSTEOPOROSIS, OSTEOPENIA):
        why += [f"{a.diagnosis.capitalize()}: {r}" for r in a.reasons[:3]]
    why += [f.fact() for f in record.fragility_fractures() if f.fact() not in " ".join(why)]
    drugs = [e for e in record.active_agents(t.OSTEOPOROSIS_DRUG_CLASSES)]
    why += [f"On {e.agent.replace('_', ' ')} since {e.start or 'an unknown date'}" for e in drugs]
    if not why:
        return []
    return _supplement_finding(record, settings, why)


# Not registered yet: order-hook rule lists stay empty until the order rules are
# wired (then decorate with @rule("order-select", "order-sign")).
def calcium_vitamin_d_with_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SUPP-CAVD on order hooks (README addition to TX-7): a bone-modifying
    drug is being ordered for a patient without active calcium and vitamin D."""
    ordered = [d for d in record.judged_drafts if d.drug_classes & t.OSTEOPOROSIS_DRUG_CLASSES]
    if not ordered:
        return []
    why = [f"Ordering {', '.join(a.replace('_', ' ') for a in ordered[0].agents)}"]
    return _supplement_finding(record, settings, why)
