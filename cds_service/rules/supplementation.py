"""Calcium and vitamin D (brief TX-7, TX-8; card family b).

Implemented: TX-7 -> C-SUPP-CAVD on patient-view (the order-hook variant,
README addition, is written and tested but not yet registered); TX-8 ->
C-VITD-LOW on patient-view (warning < 20 ng/mL, info 20-29; settings
vitamin_d_deficient_ng_ml / vitamin_d_target_ng_ml).
Second pass, section 7 ("Calcium: diet first"): the supplement closes a
dietary shortfall (one 500 mg elemental calcium tablet a day) with vitamin D3
1000 IU (800-1000); the card says to skip calcium when intake is adequate
and offers vitamin D alone for that; untreated osteopenia with no low intake
on record gets no card (USPSTF: no low-dose supplements for primary prevention).
Not here: SAFE-5 (C-VITD-LOW on order hooks) belongs to the order-safety rules.
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import VITAMIN_D_CUTOFFS, PatientRecord, written_beside

from cds_service.rules.base import NO_TRIGGER, Finding, code_token, cross_ref, rule
from cds_service.rules.diagnosis import OSTEOPENIA, assess
from cds_service.rules.facts import (
    bone_indication,
    calcium,
    ckd_4_5,
    coded_hypercalcemia,
    current_pregnancy,
    hypocalcemia_code_facts,
    low_calcium,
    vitamin_d_deficient,
    vitamin_d_hold_note,
    vitamin_d_level,
    vitamin_d_repletion_hold,
)
from cds_service.rules.settings import ClinicalSettings


def _calcium_contraindication(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """TX-7: no calcium when (corrected) calcium is above the upper limit or
    hypercalcemia is on the problem list, read as facts.vitamin_d_repletion_hold reads it
    (coded_hypercalcemia: a code outdated by a newer measured calcium no longer counts; review:
    the calcium part was held by a code 700 days old beside a normal calcium of 20 days ago,
    while the vitamin D part was offered)."""
    ca = calcium(record, settings.lab_max_age_months)
    if ca and ca.value > settings.calcium_upper_mg_dl:
        return ca.fact()
    hits = coded_hypercalcemia(record, settings)
    if hits:
        return f"Hypercalcemia on the problem list ({hits[0].code})"
    return None


def _supplement_finding(record: PatientRecord, settings: ClinicalSettings, why: list[str], *,
                        with_trigger: bool = False) -> list[Finding]:
    """with_trigger: the finding carries _supplement_trigger (patient-view; built here, not
    by dataclasses.replace afterwards, which costs as much as the finding again)."""
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
    reading = ckd_4_5(record, settings)  # a CKD stage: by eGFR (KDIGO), as C-TX-ANABOLIC reads it
    if need_d and not reading and vitamin_d_repletion_hold(record, settings):
        # Review 12: vitamin D3 was offered in one click beside a calcium of 13.8 mg/dL, which
        # C-VITD-LOW and C-GIOP already hold (labels: contraindicated in hypercalcemia). The same
        # high calcium held the calcium part above (or calcium is taken): nothing is left to offer.
        need_d = False
    deficient = vitamin_d_deficient(record, settings) if need_d else None
    if deficient:
        # TX-8: repletion (C-VITD-LOW) comes first; a maintenance dose offered
        # here as well would put two vitamin D orders on the screen. Without C-VITD-LOW on the
        # screen (quieted, held back, or not on this hook) the fact gives its regimen instead;
        # in dialysis or CKD 4-5 nephrology decides it (no generic dose, review 16).
        facts.append(f"{deficient.fact()}: vitamin D repletion with nephrology "
                     + cross_ref("C-VITD-LOW", "(see the vitamin D card)", "(no generic dose in dialysis or CKD 4-5)")
                     if reading else
                     f"{deficient.fact()}: vitamin D repletion first "
                     + cross_ref("C-VITD-LOW", "(see the vitamin D card)",
                                 "(cholecalciferol 50,000 IU weekly for 8 weeks, or 6000 IU daily)")
                     + ", then maintenance 800-1000 IU daily")
        need_d = False
    if not (need_ca or need_d):
        return []
    if reading:
        # Second-pass 1: with dialysis or CKD 4-5 the calcium load and the form of vitamin D
        # (often activated vitamin D) belong to nephrology: no generic order here, and (its
        # `kidney` variant; review 16 e14, e56) no generic calcium or vitamin D dose in the text.
        missing = " and ".join(w for w, need in (("calcium", need_ca), ("vitamin D", need_d)) if need)
        facts += list(reading.facts)
        return [Finding("C-SUPP-CAVD", facts=tuple(dict.fromkeys(facts)), suggestions=(), variant="kidney",
                        trigger=_supplement_trigger(record) if with_trigger else None,
                        trigger_codes=_supplement_codes(record) if with_trigger else None, variables={
            "missing": missing, "action": "agree calcium and vitamin D with nephrology", "kidney": reading.label})]
    ppi = record.medications.get("ppi")
    citrate = bool(ppi and ppi.active)  # TX-7: calcium citrate if on a PPI (carbonate needs acid)
    if citrate:
        facts.append("On a proton pump inhibitor: calcium citrate is absorbed without stomach acid")
    # Review 16 (rw_7e60f506): beside a low calcium (C-SAFE-HYPOCA's reading, labels: correct
    # hypocalcemia first) "dietary calcium adequate: vitamin D only" was offered; correcting a low
    # calcium needs calcium, so calcium is never left to the diet then (its `low-calcium` variant).
    low = low_calcium(record, settings) if need_ca else None
    if low:
        facts.append(low)
    if need_ca:  # review 20: a coded hypocalcemia with the calcium weighed against it
        facts += hypocalcemia_code_facts(record, settings, low)
    keys: tuple[str, ...]
    if need_ca and need_d:
        # Diet first: the calcium tablet closes a shortfall; with enough calcium in the diet, vitamin D alone.
        keys = ("calcium-citrate-and-vitamin-d" if citrate else "calcium-carbonate-and-vitamin-d",
                *(() if low else ("vitamin-d-only",)))
        missing = "calcium and vitamin D"
    elif need_ca:
        keys = ("calcium-citrate" if citrate else "calcium-carbonate",)
        missing = "calcium"
        if vitamin_d and vitamin_d.active:
            facts.append("Active vitamin D supplement on file")
    else:
        keys = ("vitamin-d",)
        missing = "vitamin D"
        if calcium and calcium.active:
            facts.append("Active calcium supplement on file")
    if low:
        action = "calcium and vitamin D3 (calcium is low)" if need_d else "calcium (calcium is low)"
    else:
        action = "vitamin D3, plus calcium if the diet falls short" if need_ca and need_d else (
            "calcium only if the diet falls short" if need_ca else "vitamin D3 800-1000 IU daily")
    return [Finding("C-SUPP-CAVD", facts=tuple(facts), suggestions=keys, variant="low-calcium" if low else None,
                    variables={"missing": missing, "action": action,
                               "with_d": " with vitamin D3 1000 IU daily" if need_d else ""},
                    trigger=_supplement_trigger(record) if with_trigger else None,
                    trigger_codes=_supplement_codes(record) if with_trigger else None)]


def untreated_osteopenia(record: PatientRecord, settings: ClinicalSettings) -> bool:
    """Osteopenia with no fragility fracture and no osteoporosis drug: primary prevention."""
    return (assess(record, settings).diagnosis == OSTEOPENIA and not record.fragility_fractures()
            and not record.active_agents(t.OSTEOPOROSIS_DRUG_CLASSES))


def _supplement_codes(record: PatientRecord) -> tuple[str, ...]:
    """The same new triggers by content (Finding.trigger_codes): the fracture codes, the bone
    drugs on board and the low-intake codes on record, dated or not."""
    codes = {code_token(c) for f in record.fractures for c in (f.code, *f.codes) if c}
    codes.update(f"drug:{e.agent}" for e in record.active_agents(t.OSTEOPOROSIS_DRUG_CLASSES))
    codes.update(code_token(h.code) for h in record.condition_hits("low_intake_or_weight") if h.code)
    return tuple(sorted(codes))


def _supplement_trigger(record: PatientRecord) -> dt.date:
    """New trigger (card_policy): a new fracture, a bone drug started, low intake coded.
    Not a repeat DXA or lab: they are no new reason for calcium and vitamin D."""
    days = [f.date for f in record.fractures if f.date]
    days += [e.start for e in record.active_agents(t.OSTEOPOROSIS_DRUG_CLASSES) if e.start]
    days += [h.date for h in record.condition_hits("low_intake_or_weight") if h.date]
    return max(days, default=NO_TRIGGER)


@rule("patient-view")
def calcium_vitamin_d(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SUPP-CAVD (info), TX-7 with second-pass 7 (diet first): osteoporosis, a
    fragility fracture or any osteoporosis drug, and no active calcium and vitamin D
    (MedicationRequest or MedicationStatement) -> suggest calcium carbonate 500 mg
    elemental once daily to close a dietary shortfall (citrate on a PPI) with
    cholecalciferol 1000 IU daily, or vitamin D alone when dietary calcium is adequate
    (SEED; BHOF22). Untreated osteopenia only with low intake or weight coded
    (USPSTF: no supplements for primary prevention). Calcium part suppressed with
    corrected Ca > upper limit or hypercalcemia. Vitamin D part left to C-VITD-LOW
    when 25OHD < 20 ng/mL (repletion first, TX-8)."""
    why = bone_indication(record, settings)
    if not why:
        return []
    if untreated_osteopenia(record, settings):
        low = record.condition_hits("low_intake_or_weight")
        if not low:
            return []
        why = [*why, f"Low calcium intake or weight on the problem list ({low[0].code}, {low[0].date or 'undated'})"]
    return _supplement_finding(record, settings, why, with_trigger=True)


@rule("patient-view")
def vitamin_d_status(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-VITD-LOW, TX-8 (AACE20; LABEL for the hypocalcemia risk; repletion
    regimen from memory, U): in a patient with a bone indication (TX-7
    population), 25-OH vitamin D within lab_max_age_months
    - < 20 ng/mL (50 nmol/L): warning, repletion order cholecalciferol 50,000 IU
      weekly x 8 weeks; must be corrected before zoledronic acid or denosumab;
    - 20 to < 30 ng/mL: info, target >= 30 ng/mL (AACE20), no order.
    nmol/L values are converted by the record (/ 2.496). A deficient value
    followed by a vitamin D start on or after its date: repletion is under way,
    so info without an order (recheck before an injection)."""
    level = vitamin_d_level(record, settings)  # a "<X" bound read as below X (review 14)
    if level is None:
        return []
    vit_d, level_word = level
    why = bone_indication(record, settings)
    if not why:
        return []
    facts = [vit_d.fact(), *why]
    supplement = record.medications.get("vitamin_d")
    on_d = bool(supplement and supplement.active)
    if on_d:
        facts.append(f"Vitamin D supplement on file since {supplement.start or 'an unknown date'}")  # type: ignore[union-attr]
    threshold = f"{settings.vitamin_d_deficient_ng_ml:g}"
    target = f"{settings.vitamin_d_target_ng_ml:g}"
    variables = {"target": target, "maintenance_start": (today + dt.timedelta(weeks=8)).isoformat()}
    if level_word == "deficient":
        variables["level"] = "deficient"
        if on_d and supplement.start and vit_d.date and supplement.start >= vit_d.date:  # type: ignore[union-attr]
            variables["headline"] = "repletion under way; recheck before zoledronic acid or denosumab"
            variables["status"] = (f"below {threshold} ng/mL; vitamin D was started after this result, so repletion "
                                   "appears to be under way: recheck 25-OH vitamin D before zoledronic acid or denosumab")
            return [Finding("C-VITD-LOW", facts=tuple(facts), indicator="info", suggestions=(), variables=variables)]
        variables["headline"] = "replete (D3 50,000 IU weekly x 8) before zoledronic acid or denosumab"
        variables["status"] = (f"below {threshold} ng/mL: replete now; correct it before zoledronic acid or "
                               "denosumab (risk of hypocalcemia)")
        # Already on a daily supplement: add the repletion course only, not a second daily order.
        key = "replete" if on_d else "replete-then-maintain"
        hold = vitamin_d_repletion_hold(record, settings)  # dialysis / CKD 4-5, high calcium: no order
        if hold:
            facts.append(f"{hold}; no vitamin D order is suggested")
            if ckd_4_5(record, settings):
                variables["headline"] = "replete with nephrology (dialysis or CKD 4-5)"
            else:
                variables["headline"] = "calcium is high too: find the cause before repleting"
                variables["status"] = f"below {threshold} ng/mL, with a high calcium: find its cause before repleting"
            variables["hold_note"] = vitamin_d_hold_note(record, settings) or ""
        return [Finding("C-VITD-LOW", facts=tuple(facts), indicator="warning", suggestions=() if hold else (key,),
                        variables=variables, variant="held" if hold else None)]
    variables["level"] = "insufficient"
    variables["headline"] = f"below the {target} ng/mL target; check intake and recheck"
    # A bound ("<30", "<=20") says below it, not how far: it may be deficient (review 14).
    bound = written_beside(vit_d.value, 0, VITAMIN_D_CUTOFFS)
    # A bound in nmol/L is written as the lab reported it (Lab.reported: "<75 nmol/L", review 16).
    reported = vit_d.reported or f"{vit_d.comparator}{bound}"
    between = (f"below {bound} ng/mL (reported as {reported}, so possibly below {threshold})" if vit_d.comparator.startswith("<") else f"between {threshold} and {target} ng/mL")
    if ckd_4_5(record, settings):
        # Review 16: with dialysis or CKD 4-5 the template's generic doses (50,000 IU weekly, 800-1000
        # IU daily) are no advice either: the `held` variant says nephrology decides (KDIGO 2017 CKD-MBD).
        variables["headline"] = f"below the {target} ng/mL target; vitamin D with nephrology (dialysis or CKD 4-5)"
        variables["status"] = f"{between}: below the AACE 2020 target of at least {target} ng/mL"
        variables["hold_note"] = vitamin_d_hold_note(record, settings) or ""
        return [Finding("C-VITD-LOW", facts=tuple(facts), indicator="info", suggestions=(), variables=variables,
                        variant="held")]
    variables["status"] = (f"{between}: below the AACE 2020 target of at least {target} "
                           "ng/mL; make sure 800-1000 IU daily (or more) is actually taken")
    return [Finding("C-VITD-LOW", facts=tuple(facts), indicator="info", suggestions=(), variables=variables)]


# Not registered yet: order-hook rule lists stay empty until the order rules are
# wired (then decorate with @rule("order-select", "order-sign")).
def calcium_vitamin_d_with_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SUPP-CAVD on order hooks (README addition to TX-7): a bone-modifying
    drug is being ordered for a patient without active calcium and vitamin D. Quiet in
    a current pregnancy: C-SAFE-PREGNANCY removes that order, so it is no reason here."""
    ordered = [d for d in record.judged_drafts if d.drug_classes & t.OSTEOPOROSIS_DRUG_CLASSES]
    if not ordered or current_pregnancy(record, settings):
        return []
    why = [f"Ordering {', '.join(a.replace('_', ' ') for a in ordered[0].agents)}"]
    return _supplement_finding(record, settings, why)
