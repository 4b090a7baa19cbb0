"""Drug-safety checks on orders and on active therapy (brief section 4).

Written here (card ids from brief section 7 and ../shared/clinical/README.md):
  SAFE-1/2/3 C-SAFE-RENAL (orders and active drugs), SAFE-4 C-SAFE-HYPOCA,
  SAFE-5 C-VITD-LOW on order hooks, SAFE-6 C-SAFE-DMAB-CKD, SAFE-7 C-SAFE-ESOPH,
  SAFE-8 C-SAFE-ROMO-CV, SAFE-9 C-SAFE-ROMO-LIMIT, SAFE-10 C-SAFE-PTH-LIMIT,
  SAFE-11 C-SAFE-ANABOLIC-CONTRA, SAFE-15 C-DUP-ANTIRES.
Not here: SAFE-12..14 (C-ANABOLIC-FOLLOW-ON, C-DMAB-DUE/OVERDUE/STOP) and
SAFE-16 (anabolic + antiresorptive is not a duplicate).

Order hooks judge record.judged_drafts (the selections on order-select, every
draft on order-sign); the other drafts are context (SAFE-15 counts them as
concurrent). A draft that names no drug (the public sandbox sends one when Rx
View opens) matches nothing and stays quiet. Oncology products (Xgeva 120 mg,
Zometa 4 mg) are not osteoporosis regimens: their own labels govern them, so
only SAFE-15 looks at them (brief 8.6). Safety cards need an actual value: an
unknown eGFR, calcium or vitamin D is never read as abnormal.

An unsafe draft gets one suggestion per mutually exclusive alternative, each a
`delete` of the draft (its relative reference) plus the `create` of the safe
alternative where the brief names one; cards say at-most-one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from cds_service.fhir import terminology as t
from cds_service.record import AgentExposure, ConditionHit, DraftOrder, Lab, PatientRecord, as_written, months_between
from cds_service.rules.base import Action, Finding, Suggestion, rule
from cds_service.rules.settings import ClinicalSettings

ORDERS = ("order-select", "order-sign")
LABELS = {"zoledronic_acid": "zoledronic acid"}


def _label(agent: str) -> str:
    return LABELS.get(agent, agent.replace("_", " "))


def _title(agent: str) -> str:
    text = _label(agent)
    return text[0].upper() + text[1:]


def _date(value: dt.date | None) -> str:
    return value.isoformat() if value else "an unknown date"


def _condition_fact(hit: ConditionHit, label: str) -> str:
    return f"{label} ({hit.code or 'coded'}) on {_date(hit.date)}"


def _draft_fact(draft: DraftOrder, agent: str) -> str:
    return f"Draft order: {_label(agent)} ({draft.reference or 'draft without id'})"


def _ordered(record: PatientRecord, agents: Iterable[str]) -> list[tuple[DraftOrder, str]]:
    """(draft, agent) for judged medication drafts naming one of `agents`,
    oncology products left out."""
    wanted = set(agents)
    out = []
    for draft in record.judged_drafts:
        if draft.kind != "medication" or draft.oncology:
            continue
        for agent in draft.agents:
            if agent in wanted:
                out.append((draft, agent))
                break
    return out


def _egfr(record: PatientRecord, settings: ClinicalSettings) -> Lab | None:
    return record.lab("egfr", settings.lab_max_age_months)


def _calcium(record: PatientRecord, settings: ClinicalSettings) -> Lab | None:
    """Latest calcium within calcium_max_age_months (brief 1: <= 6 months before
    an antiresorptive injection), albumin-corrected when an albumin pairs with it."""
    total = record.lab("calcium", settings.calcium_max_age_months)
    corrected = record.lab("calcium_corrected", settings.calcium_max_age_months)
    if corrected and (total is None or corrected.date == total.date):
        return corrected
    return total


def _low_calcium(record: PatientRecord, settings: ClinicalSettings) -> str | None:
    """SAFE-4 trigger as a fact: (corrected) Ca below the lower limit, or an
    active hypocalcemia Condition. None when neither is known."""
    ca = _calcium(record, settings)
    if ca and ca.value < settings.calcium_lower_mg_dl:
        return f"{ca.fact()} (below {settings.calcium_lower_mg_dl:g} mg/dL)"
    hits = record.condition_hits("hypocalcemia")
    if hits:
        return _condition_fact(hits[0], "Hypocalcemia")
    return None


def _dialysis(record: PatientRecord) -> ConditionHit | None:
    hits = record.condition_hits("dialysis") or record.condition_hits("ckd_4_5")
    return hits[0] if hits else None


def _active(record: PatientRecord, agent: str) -> bool:
    e = record.medications.get(agent)
    return bool(e and e.active)


def _replacement_keys(record: PatientRecord, settings: ClinicalSettings, draft: DraftOrder, *,
                      zoledronate: bool = False, denosumab: bool = True, alendronate: bool = False) -> tuple[str, ...]:
    """YAML suggestion keys replacing `draft` (delete + create), safest first;
    "remove" (delete only) last. Only alternatives the record does not
    already rule out: no injection with known low calcium, no zoledronate
    without a known eGFR >= its limit, no drug the patient already takes."""
    if not draft.reference:
        return ()  # nothing to delete: the card still explains
    keys = []
    egfr = _egfr(record, settings)
    hypoca = _low_calcium(record, settings)
    if denosumab and not hypoca and not _active(record, "denosumab"):
        ckd = (egfr and egfr.value < settings.egfr_denosumab_ckd) or _dialysis(record)
        keys.append("denosumab-instead-ckd" if ckd else "denosumab-instead")
    if zoledronate and not hypoca and egfr and egfr.value >= settings.egfr_zoledronate_min \
            and not _active(record, "zoledronic_acid"):
        keys.append("zoledronate-instead")
    if alendronate and egfr and egfr.value >= settings.egfr_alendronate_min and not _oral_bp_problem(record) \
            and not _active(record, "alendronate"):
        keys.append("alendronate-instead")
    keys.append("remove")
    return tuple(keys)


# ---------------------------------------------------------------------------
# SAFE-1/2/3: kidney function
# ---------------------------------------------------------------------------

RENAL_AGENTS = ("alendronate", "risedronate", "ibandronate", "zoledronic_acid")


def _renal_limit(agent: str, settings: ClinicalSettings) -> float:
    return {"alendronate": settings.egfr_alendronate_min, "risedronate": settings.egfr_risedronate_min,
            "ibandronate": settings.egfr_risedronate_min, "zoledronic_acid": settings.egfr_zoledronate_min}[agent]


def _renal_problem(record: PatientRecord, settings: ClinicalSettings, agent: str) -> tuple[str, list[str]] | None:
    """(indicator, facts) when `agent` is unsafe for this kidney function."""
    egfr = _egfr(record, settings)
    limit = _renal_limit(agent, settings)
    facts = []
    if egfr and egfr.value < limit:
        facts.append(f"{egfr.fact()} (below {limit:g} for {_label(agent)})")
    if agent == "zoledronic_acid":
        aki = record.condition_hits("acute_kidney_injury")
        if aki:
            facts.append(_condition_fact(aki[0], "Acute kidney injury"))
    if not facts:
        return None
    return ("critical" if agent == "zoledronic_acid" else "warning"), facts


def _renal_variables(agent: str, indicator: str, settings: ClinicalSettings, situation: str,
                     advice: str) -> dict[str, str]:
    critical = indicator == "critical"
    return {
        "drug": _title(agent),
        "drug_name": _label(agent),
        "verdict": "contraindicated" if critical else "not recommended",
        "renal_limit": f"{_renal_limit(agent, settings):g}",
        "label_text": ("Reclast label: contraindicated with creatinine clearance < 35 mL/min and in acute renal "
                       "impairment" if critical else
                       f"{'Fosamax' if agent == 'alendronate' else 'Actonel/Boniva'} label: not recommended "
                       f"with creatinine clearance < {_renal_limit(agent, settings):g} mL/min"),
        "situation": situation,
        "advice": advice,
    }


@rule(*ORDERS)
def renal_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-RENAL. SAFE-1: alendronate ordered with eGFR < 35 -> warning;
    SAFE-2: risedronate or ibandronate with eGFR < 30 -> warning; SAFE-3:
    zoledronic acid with eGFR < 35 or acute renal impairment -> critical
    (LABEL: Fosamax, Actonel, Boniva, Reclast; AACE20; SEED). Alternative:
    denosumab 60 mg every 6 months with a calcium check (TX-3; ACP23 Rec 2)."""
    findings = []
    for draft, agent in _ordered(record, RENAL_AGENTS):
        problem = _renal_problem(record, settings, agent)
        if not problem:
            continue
        indicator, facts = problem
        advice = ("Do not give it. Denosumab 60 mg every 6 months is the usual alternative when a "
                  "bisphosphonate is ruled out by kidney function; check serum calcium before the first dose."
                  if indicator == "critical" else
                  "Consider denosumab 60 mg every 6 months instead, with a serum calcium check before the "
                  "first dose.")
        findings.append(Finding(
            "C-SAFE-RENAL", facts=(_draft_fact(draft, agent), *facts), indicator=indicator,
            variables=_renal_variables(agent, indicator, settings, f"{_title(agent)} is being ordered.", advice),
            suggestions=_replacement_keys(record, settings, draft), delete_draft=draft.reference or None))
    return findings


@rule("patient-view")
def renal_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-RENAL on patient-view (brief 4: "ordered/active"): an ACTIVE
    alendronate / risedronate / ibandronate / zoledronic acid (dose within its
    interval) with eGFR below the same limits. No order to delete: the card
    asks for a review of the therapy."""
    findings = []
    for agent in RENAL_AGENTS:
        e = record.medications.get(agent)
        if not e or not e.active or e.oncology_only:
            continue
        problem = _renal_problem(record, settings, agent)
        if not problem:
            continue
        indicator, facts = problem
        since = f"On {_label(agent)} since {_date(e.start)}"
        if e.last_dose and e.dose_count:
            since += f", last dose {_date(e.last_dose)}"
        advice = ("Review the therapy: do not give the next dose at this kidney function. Denosumab "
                  "60 mg every 6 months (with a calcium check) is the usual alternative.")
        findings.append(Finding(
            "C-SAFE-RENAL", facts=(since, *facts), indicator=indicator, suggestions=(),
            variables=_renal_variables(agent, indicator, settings, f"The patient is on {_label(agent)}.", advice)))
    return findings


# ---------------------------------------------------------------------------
# SAFE-4 hypocalcemia, SAFE-5 vitamin D, SAFE-6 denosumab in advanced CKD
# ---------------------------------------------------------------------------

INJECTABLE_ANTIRESORPTIVES = ("zoledronic_acid", "denosumab")


@rule(*ORDERS)
def hypocalcemia_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-HYPOCA (critical), SAFE-4: zoledronic acid or denosumab ordered
    with corrected calcium below calcium_lower_mg_dl (8.5 mg/dL) or an active
    hypocalcemia Condition: correct it first (LABEL Prolia/Reclast; SEED)."""
    low = _low_calcium(record, settings)
    if not low:
        return []
    findings = []
    for draft, agent in _ordered(record, INJECTABLE_ANTIRESORPTIVES):
        vit_d = record.lab("vitamin_d", settings.lab_max_age_months)
        facts = [_draft_fact(draft, agent), low] + ([vit_d.fact()] if vit_d else [])
        findings.append(Finding(
            "C-SAFE-HYPOCA", facts=tuple(facts), variables={"drug": _title(agent), "drug_name": _label(agent)},
            suggestions=("defer-and-recheck", "remove") if draft.reference else (),
            delete_draft=draft.reference or None))
    return findings


def _cholecalciferol_repletion() -> dict:
    """TX-8 repletion order (D3 50,000 IU weekly x 8: dose from memory, U in
    the brief; the clinician confirms). RxNorm 2418 cholecalciferol (V)."""
    return {
        "resourceType": "MedicationRequest",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": t.RXNORM, "code": "2418", "display": "cholecalciferol"}],
            "text": "cholecalciferol (vitamin D3) 50,000 IU",
        },
        "dosageInstruction": [{
            "text": "50,000 IU by mouth once weekly for 8 weeks, then 800-1000 IU daily; recheck 25-OH vitamin D.",
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "wk",
                                  "boundsDuration": {"value": 8, "unit": "wk", "system": t.UCUM, "code": "wk"}}},
            "route": {"text": "oral"},
            "doseAndRate": [{"doseQuantity": {"value": 50000, "unit": "IU", "system": t.UCUM, "code": "[iU]"}}],
        }],
    }


@rule(*ORDERS)
def vitamin_d_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-VITD-LOW at warning on order hooks, SAFE-5: zoledronic acid or
    denosumab ordered with 25-OH vitamin D < vitamin_d_deficient_ng_ml (20):
    replete vitamin D first (AACE20; SEED; TX-8). The patient-view C-VITD-LOW
    rule lives in supplementation.py; this order-time card builds its text
    variables and suggestions in code so the two share one card template."""
    vit_d = record.lab("vitamin_d", settings.lab_max_age_months)
    if not vit_d or vit_d.value >= settings.vitamin_d_deficient_ng_ml:
        return []
    findings = []
    for draft, agent in _ordered(record, INJECTABLE_ANTIRESORPTIVES):
        suggestions = ()
        if draft.reference:
            suggestions = (Suggestion(
                f"Replete vitamin D first: cancel the {_label(agent)} order, start cholecalciferol repletion",
                (Action("delete", f"Remove the draft {_label(agent)} order until vitamin D is replete",
                        resource_id=(draft.reference,)),
                 Action("create", "Cholecalciferol 50,000 IU weekly for 8 weeks, then maintenance",
                        resource=_cholecalciferol_repletion())),
                is_recommended=True),)
        findings.append(Finding(
            "C-VITD-LOW", indicator="warning",
            facts=(_draft_fact(draft, agent), f"{vit_d.fact()} (below {settings.vitamin_d_deficient_ng_ml:g} ng/mL)"),
            # Variables of the shared C-VITD-LOW template (patient-view owns its wording).
            variables={
                "level": "deficient",
                "headline": f"replete before {_label(agent)}",
                "status": (f"{as_written(vit_d.value, 0)} ng/mL, below {settings.vitamin_d_deficient_ng_ml:g} ng/mL, while "
                           f"{_label(agent)} is being ordered: replete first, recheck 25-OH vitamin D and calcium, "
                           f"then give the {_label(agent)}"),
                "target": f"{settings.vitamin_d_target_ng_ml:g}",
                "maintenance_start": (today + dt.timedelta(weeks=8)).isoformat(),
            },
            suggestions=(), extra_suggestions=suggestions))
    return findings


@rule(*ORDERS)
def denosumab_ckd_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-DMAB-CKD (warning), SAFE-6: denosumab ordered with eGFR < 30
    (egfr_denosumab_ckd) or dialysis / coded CKD stage 4-5: severe
    hypocalcemia risk; check calcium and PTH, involve a specialist; calcium
    before each dose (MON-8). LABEL (2024 boxed warning: memory, U)."""
    egfr = _egfr(record, settings)
    dialysis = _dialysis(record)
    facts = []
    if egfr and egfr.value < settings.egfr_denosumab_ckd:
        facts.append(f"{egfr.fact()} (below {settings.egfr_denosumab_ckd:g})")
    if dialysis:
        facts.append(_condition_fact(dialysis, "Dialysis / CKD stage 4-5"))
    if not facts:
        return []
    findings = []
    for draft, agent in _ordered(record, ("denosumab",)):
        ca = _calcium(record, settings)
        pth = record.lab("pth", settings.lab_max_age_months)
        known = [lab.fact() for lab in (ca, pth) if lab]
        findings.append(Finding(
            "C-SAFE-DMAB-CKD", facts=(_draft_fact(draft, agent), *facts, *known),
            suggestions=("check-calcium-pth",) + (("remove",) if draft.reference else ()),
            delete_draft=draft.reference or None))
    return findings


# ---------------------------------------------------------------------------
# SAFE-7 oral bisphosphonate and the esophagus
# ---------------------------------------------------------------------------

ORAL_BPS = ("alendronate", "risedronate", "ibandronate")


def _oral_bp_problem(record: PatientRecord) -> list[str]:
    facts = []
    for group, label, active_only in (("esophageal", "Esophageal disorder", True),
                                      ("bariatric", "Bariatric surgery", False),
                                      ("cannot_stay_upright", "Cannot stay upright for 30 minutes", True)):
        hits = record.condition_hits(group, active_only=active_only)
        if hits:
            facts.append(_condition_fact(hits[0], label))
    return facts


@rule(*ORDERS)
def esophageal_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ESOPH (warning), SAFE-7: oral bisphosphonate ordered with an
    esophageal disorder (stricture, achalasia, dysmotility, varices, Barrett's),
    bariatric (Roux-en-Y) surgery, or inability to stay upright for 30 minutes:
    suggest IV zoledronic acid or denosumab (LABEL Fosamax; AACE20; TX-3)."""
    problems = _oral_bp_problem(record)
    if not problems:
        return []
    findings = []
    for draft, agent in _ordered(record, ORAL_BPS):
        egfr = _egfr(record, settings)
        findings.append(Finding(
            "C-SAFE-ESOPH", facts=(_draft_fact(draft, agent), *problems, *([egfr.fact()] if egfr else [])),
            variables={"drug": _title(agent), "drug_name": _label(agent)},
            suggestions=_replacement_keys(record, settings, draft, zoledronate=True),
            delete_draft=draft.reference or None))
    return findings


# ---------------------------------------------------------------------------
# SAFE-8..11 anabolic agents
# ---------------------------------------------------------------------------

PTH_AGENTS = ("teriparatide", "abaloparatide")
ANABOLIC_CONTRA_GROUPS = (
    ("paget", "Paget disease of bone", True),
    ("skeletal_malignancy", "Bone metastases / skeletal malignancy", True),
    ("skeletal_radiation", "Prior skeletal radiation", False),
    ("open_epiphyses", "Open epiphyses", True),
    ("hypercalcemia", "Hypercalcemia", True),
    ("hyperparathyroidism", "Hyperparathyroidism", True),
)


def _anabolic_contra(record: PatientRecord) -> list[str]:
    facts = []
    for group, label, active_only in ANABOLIC_CONTRA_GROUPS:
        hits = record.condition_hits(group, active_only=active_only)
        if hits:
            facts.append(_condition_fact(hits[0], label))
    return facts


def _pth_keys(record: PatientRecord, settings: ClinicalSettings, draft: DraftOrder) -> tuple[str, ...]:
    """Teriparatide / abaloparatide instead of `draft` (SAFE-8), unless a PTH
    analog is ruled out (SAFE-10 limit reached, SAFE-11 contraindication)."""
    if not draft.reference:
        return ()
    if _anabolic_contra(record) or record.class_exposure_months(t.PTH_ANALOG) >= settings.pth_max_months:
        return ("remove",)
    keys = ["teriparatide-instead"]
    if record.female:  # abaloparatide in men: approval from memory (brief TX-4, U); teriparatide is enough
        keys.append("abaloparatide-instead")
    return (*keys, "remove")


@rule(*ORDERS)
def romosozumab_cv_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ROMO-CV (critical), SAFE-8: romosozumab ordered with an MI or
    stroke with onset <= mi_stroke_window_months (12) ago: do not initiate;
    suggest teriparatide or abaloparatide (LABEL Evenity boxed warning; ES20)."""
    events = []
    for group, label in (("mi", "Myocardial infarction"), ("stroke", "Stroke")):
        # a resolved MI is still a recent MI: history counts, not only active problems
        hits = record.condition_hits(group, active_only=False, within_months_=settings.mi_stroke_window_months)
        events += [_condition_fact(h, label) for h in hits[:1]]
    if not events:
        return []
    return [Finding("C-SAFE-ROMO-CV", facts=(_draft_fact(draft, agent), *events),
                    variables={"window": str(settings.mi_stroke_window_months)},
                    suggestions=_pth_keys(record, settings, draft), delete_draft=draft.reference or None)
            for draft, agent in _ordered(record, ("romosozumab",))]


def _romo_course(record: PatientRecord) -> tuple[float, str] | None:
    """(doses so far, fact). Doses are administrations (brief: clinician-given
    drug); with none on file, months of prescribed romosozumab stand in
    (one dose a month)."""
    e = record.medications.get("romosozumab")
    if not e:
        return None
    if e.dose_count:
        return float(e.dose_count), (f"Romosozumab: {e.dose_count} monthly doses given since {_date(e.start)}, "
                                     f"last on {_date(e.last_dose)}")
    if e.exposure_days:
        months = e.exposure_months
        return months, (f"Romosozumab prescribed for {months:.1f} months since {_date(e.start)} "
                        f"(no administrations on record)")
    return None


def _transition_keys(record: PatientRecord, settings: ClinicalSettings, draft: DraftOrder | None) -> tuple[str, ...]:
    """Follow-on antiresorptive after an anabolic course: denosumab (with a
    calcium check) or alendronate; with a draft, each replaces it."""
    if draft is None:
        keys = []
        egfr = _egfr(record, settings)
        if not _low_calcium(record, settings) and not _active(record, "denosumab"):
            ckd = (egfr and egfr.value < settings.egfr_denosumab_ckd) or _dialysis(record)
            keys.append("start-denosumab-ckd" if ckd else "start-denosumab")
        if egfr and egfr.value >= settings.egfr_alendronate_min and not _oral_bp_problem(record) \
                and not _active(record, "alendronate"):
            keys.append("start-alendronate")
        return tuple(keys)
    return _replacement_keys(record, settings, draft, alendronate=True)


@rule(*ORDERS)
def romosozumab_limit_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ROMO-LIMIT (warning), SAFE-9 on order hooks: romosozumab ordered
    when romo_max_doses (12) monthly doses are already given, so the draft
    would be the 13th: stop, transition to an antiresorptive (LABEL)."""
    course = _romo_course(record)
    if not course or course[0] < settings.romo_max_doses:
        return []
    return [Finding("C-SAFE-ROMO-LIMIT", facts=(_draft_fact(draft, agent), course[1]),
                    variables={"max_doses": str(settings.romo_max_doses)},
                    suggestions=_transition_keys(record, settings, draft), delete_draft=draft.reference or None)
            for draft, agent in _ordered(record, ("romosozumab",))]


@rule("patient-view")
def romosozumab_limit_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ROMO-LIMIT (warning), SAFE-9 on patient-view: romosozumab still
    active after more than romo_max_doses (12) monthly doses (LABEL)."""
    course = _romo_course(record)
    e = record.medications.get("romosozumab")
    if not course or not e or not e.active or course[0] <= settings.romo_max_doses:
        return []
    return [Finding("C-SAFE-ROMO-LIMIT", facts=(course[1],), variables={"max_doses": str(settings.romo_max_doses)},
                    suggestions=_transition_keys(record, settings, None))]


def _pth_facts(record: PatientRecord, months: float) -> list[str]:
    facts = [f"{_title(e.agent)}: {e.exposure_months:.1f} months since {_date(e.start)}"
             for e in record.exposures([t.PTH_ANALOG])]
    facts.append(f"Cumulative teriparatide + abaloparatide exposure {months:.1f} months")
    return facts


@rule(*ORDERS)
def pth_limit_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-PTH-LIMIT (warning), SAFE-10 on order hooks: teriparatide or
    abaloparatide ordered when cumulative PTH-analog exposure (both agents
    summed, overlaps merged) has already reached pth_max_months (24):
    transition to an antiresorptive (LABEL; SEED)."""
    months = record.class_exposure_months(t.PTH_ANALOG)
    if months < settings.pth_max_months:
        return []
    return [Finding("C-SAFE-PTH-LIMIT", facts=(_draft_fact(draft, agent), *_pth_facts(record, months)),
                    variables={"max_months": str(settings.pth_max_months), "drug_name": _label(agent)},
                    suggestions=_transition_keys(record, settings, draft), delete_draft=draft.reference or None)
            for draft, agent in _ordered(record, PTH_AGENTS)]


@rule("patient-view")
def pth_limit_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-PTH-LIMIT (warning), SAFE-10 on patient-view: a PTH analog still
    active with cumulative exposure beyond pth_max_months (24)."""
    months = record.class_exposure_months(t.PTH_ANALOG)
    if months <= settings.pth_max_months or not record.active_agents([t.PTH_ANALOG]):
        return []
    return [Finding("C-SAFE-PTH-LIMIT", facts=tuple(_pth_facts(record, months)),
                    variables={"max_months": str(settings.pth_max_months), "drug_name": "teriparatide/abaloparatide"},
                    suggestions=_transition_keys(record, settings, None))]


@rule(*ORDERS)
def anabolic_contraindication_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SAFE-ANABOLIC-CONTRA (warning), SAFE-11: teriparatide or abaloparatide
    ordered with Paget disease, open epiphyses, prior skeletal radiation, bone
    metastases / skeletal malignancy, hypercalcemia or hyperparathyroidism
    (LABEL, memory). "Unexplained high ALP" is not read yet (no ALP lab in the
    record); the card text asks the prescriber to check it."""
    problems = _anabolic_contra(record)
    if not problems:
        return []
    return [Finding("C-SAFE-ANABOLIC-CONTRA", facts=(_draft_fact(draft, agent), *problems),
                    variables={"drug": _title(agent), "drug_name": _label(agent)},
                    suggestions=("remove",) if draft.reference else (), delete_draft=draft.reference or None)
            for draft, agent in _ordered(record, PTH_AGENTS)]


# ---------------------------------------------------------------------------
# SAFE-15 duplicate antiresorptives
# ---------------------------------------------------------------------------

def _current_start(e: AgentExposure) -> dt.date | None:
    """Start of the current course: the latest start among its events (an old,
    finished course of the same drug does not make a new one look old)."""
    starts = [ev.start or ev.dose_date for ev in e.events if ev.start or ev.dose_date]
    return max(starts) if starts else None


def _is_transition(bp_start: dt.date | None, dmab: AgentExposure | None, settings: ClinicalSettings) -> bool:
    """SAFE-15 exemption: a bisphosphonate started >= bp_after_dmab_transition_months
    (5) after the last denosumab dose is the planned follow-on (ECTS21)."""
    if dmab is None or dmab.last_dose is None or bp_start is None:
        return False
    # months of 30.4 days, like every other window in the record (calendar months would move
    # the boundary by a day or two depending on which months are crossed)
    return months_between(dmab.last_dose, bp_start) >= settings.bp_after_dmab_transition_months


def _duplicate(a_agent: str, a_start: dt.date | None, b_agent: str, b_start: dt.date | None,
               dmab: AgentExposure | None, settings: ClinicalSettings) -> bool:
    """Two different antiresorptive agents at once, bar the denosumab -> BP transition."""
    if a_agent == b_agent:
        return False
    classes = {t.AGENTS[a_agent].drug_class, t.AGENTS[b_agent].drug_class}
    if t.DENOSUMAB in classes and classes & t.BISPHOSPHONATE_CLASSES:
        bp_start = a_start if t.AGENTS[a_agent].drug_class in t.BISPHOSPHONATE_CLASSES else b_start
        if _is_transition(bp_start, dmab, settings):
            return False
    return True


def _exposure_fact(e: AgentExposure) -> str:
    name = f"{_title(e.agent)}{' (oncology product)' if e.oncology_only else ''}"
    if e.dose_count:  # clinician-given: the last dose is what counts
        return f"{name}: {e.dose_count} doses on record, last dose {_date(e.last_dose)}"
    return f"{name}: active, current course since {_date(_current_start(e))}"


def _antiresorptive_drafts(drafts: Iterable[DraftOrder]) -> list[tuple[DraftOrder, str]]:
    return [(d, a) for d in drafts if d.kind == "medication"
            for a in d.agents if t.AGENTS[a].drug_class in t.ANTIRESORPTIVE_CLASSES]


@rule(*ORDERS)
def duplicate_antiresorptive_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DUP-ANTIRES (warning), SAFE-15 on order hooks: an antiresorptive
    ordered while a different one is active, or is also in the draft orders
    (bisphosphonate + denosumab, two bisphosphonates, bisphosphonate or
    denosumab + raloxifene). Exemption: a bisphosphonate started (today) >= 5
    months after the last denosumab dose is the transition (ECTS21). Oncology
    products count as exposure (brief 8.6). Anabolic + antiresorptive is
    SAFE-16, not this card. Sources: AACE20 (combination not recommended,
    memory); SEED."""
    active = record.active_agents(t.ANTIRESORPTIVE_CLASSES)
    dmab = record.medications.get("denosumab")
    everything = _antiresorptive_drafts(record.drafts)
    findings = []
    for draft, agent in _antiresorptive_drafts(record.judged_drafts):
        # ordering denosumab gives a dose today: the BP -> denosumab direction is never a transition
        last_dmab = None if agent == "denosumab" else dmab
        clashes = [_exposure_fact(e) for e in active
                   if _duplicate(agent, today, e.agent, _current_start(e), last_dmab, settings)]
        clashes += [_draft_fact(d, a) for d, a in everything
                    if d is not draft and _duplicate(agent, today, a, today, None, settings)]
        if clashes:
            findings.append(Finding(
                "C-DUP-ANTIRES", facts=(_draft_fact(draft, agent), *clashes),
                variables={"situation": f"{_title(agent)} is being ordered while another antiresorptive "
                                        "is active or being ordered."},
                suggestions=("remove",) if draft.reference else (), delete_draft=draft.reference or None))
    return findings


@rule("patient-view")
def duplicate_antiresorptive_active(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-DUP-ANTIRES (warning), SAFE-15 on patient-view: two different active
    antiresorptives, with the same transition exemption."""
    active = record.active_agents(t.ANTIRESORPTIVE_CLASSES)
    dmab = record.medications.get("denosumab")
    for i, a in enumerate(active):
        for b in active[i + 1:]:
            if _duplicate(a.agent, _current_start(a), b.agent, _current_start(b), dmab, settings):
                return [Finding("C-DUP-ANTIRES", facts=(_exposure_fact(a), _exposure_fact(b)),
                                variables={"situation": "The patient is on two antiresorptives at the same time."},
                                suggestions=())]
    return []


__all__ = ["renal_order", "renal_active", "hypocalcemia_order", "vitamin_d_order", "denosumab_ckd_order",
           "esophageal_order", "romosozumab_cv_order", "romosozumab_limit_order", "romosozumab_limit_active",
           "pth_limit_order", "pth_limit_active", "anabolic_contraindication_order",
           "duplicate_antiresorptive_order", "duplicate_antiresorptive_active"]
