"""Monitoring and screening (brief section 5, card family c).

Implemented (patient-view):
- MON-1 + MON-6 -> C-MON-DXA-DUE: repeat DXA due (on therapy, in a drug
  holiday or osteoporosis: dxa_interval_months; untreated osteopenia: by
  lowest T-score, osteopenia_dxa_years).
- MON-1 + seed 000, second-pass 7 -> C-MON-ONTX: on therapy, only when
  something is due or abnormal (a refill gap, a new fracture, calcium out of
  range), never as a standing reminder.
- MON-3/MON-4/MON-5 -> C-SCREEN-DXA: screening DXA for women (never men by age).
- MON-7 / TX-1a -> C-LAB-BASELINE: baseline labs before starting therapy.
- ACR22 (second-pass 5) -> C-GIOP: glucocorticoid-induced osteoporosis
  assessment for long-term glucocorticoid users >= 40.
Elsewhere: MON-2 C-MON-DXA-DUP (order_checks), HOLIDAY-1 C-HOLIDAY (treatment).

The DXA cards are exclusive by design: a patient in the monitoring population
(therapy, holiday, osteoporosis) gets C-MON-DXA-DUE or C-MON-ONTX, never
C-SCREEN-DXA; screening is for patients with no diagnosis and no therapy.
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import AgentExposure, CareEvent, PatientRecord, add_months, months_between, within_months
from cds_service.rules.base import Finding, rule
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, VERY_HIGH, assess, lowest_t
from cds_service.rules.memo import per_call
from cds_service.rules.settings import ClinicalSettings
from cds_service.rules.facts import (
    abnormal_then,
    baseline_labs_due,
    calcium,
    bone_indication,
    alendronate_not_offered,
    ckd_4_5,
    current_osteoporosis_therapy,
    therapy_under_way,
    current_pregnancy,
    glucocorticoid_mg_text,
    glucocorticoid_use,
    in_drug_holiday,
    kidney,
    lab_facts,
    vitamin_d_repletion_hold,
)
from cds_service.rules.orders import pregnancy_referral


def _name(agent: str) -> str:
    return agent.replace("_", " ")


@per_call
def monitored_therapy(record: PatientRecord, settings: ClinicalSettings | None = None) -> list[AgentExposure]:
    """Active osteoporosis drugs that call for BMD monitoring. Oncology-only
    products (Xgeva, Zometa for bone metastases) are antiresorptive exposure
    but not an osteoporosis regimen: their monitoring is the oncologist's.
    Second-pass 4: systemic estrogen counts too when the patient has
    osteoporosis (it silenced the drug-start card, so this card says it is on
    board); estrogen for symptoms with normal bones is not bone monitoring."""
    out = [e for e in current_osteoporosis_therapy(record) if not e.oncology_only]
    if settings is not None and assess(record, settings).diagnosis == OSTEOPOROSIS:
        out += record.active_agents([t.ESTROGEN])
    return out


def _therapy_fact(e: AgentExposure) -> str:
    fact = f"On {_name(e.agent)} since {e.start or 'an unknown date'}"
    if e.last_dose and e.drug_class in (t.IV_BP, t.DENOSUMAB, t.ROMOSOZUMAB):
        fact += f", last dose on {e.last_dose}"
    if e.exposure_months >= 1:
        fact += f" (about {e.exposure_months:.0f} months of exposure on record)"
    return fact


def _last_dxa_fact(record: PatientRecord) -> str:
    last = record.latest_dxa_date
    lowest = lowest_t(record)
    if last is None:
        # A T-score with no date is a DXA whose day is not on record, not "no DXA" (review 13).
        undated = record.t_scores()
        return (f"DXA date not on record: {min(undated, key=lambda b: b.value).fact()}" if undated else
                "No DXA on file")
    if lowest is not None and lowest.date == last:
        return f"Last DXA on {last}: lowest {lowest.fact()}"
    return f"Last DXA on {last}"


def dxa_schedule(record: PatientRecord, settings: ClinicalSettings) -> tuple[str, int, list[str]] | None:
    """Who needs repeat DXA, and how often: (population, interval in months,
    facts), or None when MON-1/MON-6 do not apply (or the interval cannot be
    told). Population: "therapy", "holiday", "osteoporosis", "osteopenia"."""
    therapy = monitored_therapy(record, settings)
    if therapy:
        return "therapy", settings.dxa_interval_months, [_therapy_fact(e) for e in therapy]
    if in_drug_holiday(record, settings):
        # Brief HOLIDAY-1: re-evaluate BMD every 2 years while on holiday.
        return "holiday", settings.dxa_interval_months, ["Bisphosphonate drug holiday (course finished, no new fracture)"]
    a = assess(record, settings)
    if a.diagnosis == OSTEOPOROSIS:
        return "osteoporosis", settings.dxa_interval_months, [f"Osteoporosis: {r}" for r in a.reasons[:3]]
    if a.diagnosis == OSTEOPENIA:
        lowest = lowest_t(record)
        if lowest is None:
            return None  # osteopenia on the problem list without a T-score: interval unknown, stay quiet
        two, three, five = settings.osteopenia_dxa_years
        years = two if lowest.value <= -2.0 else three if lowest.value <= -1.5 else five
        return "osteopenia", years * 12, [f"Untreated osteopenia: {lowest.fact()}"]
    return None


def dxa_ordered(record: PatientRecord, settings: ClinicalSettings) -> CareEvent | None:
    """A DXA already ordered (second-pass 7): a placed ServiceRequest within done_within_months
    and after the last DXA on file (an order the scan then answered is spent)."""
    last = record.latest_dxa_date
    orders = [c for c in record.care_done((t.DXA_CARE,), settings.done_within_months)
              if c.source == "ServiceRequest" and (last is None or c.date > last)]  # type: ignore[operator]
    return orders[-1] if orders else None


def _interval_text(months: int) -> str:
    return f"{months // 12} years" if months % 12 == 0 else f"{months} months"


@rule("patient-view")
def dxa_due(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-MON-DXA-DUE (info). MON-1 (SEED "BMD every 2 years"; AACE20; BHOF22):
    on therapy, in a drug holiday, or osteoporosis, and the last DXA is at
    least dxa_interval_months old (or none is on file) -> ServiceRequest DXA
    (CPT 77080 + SNOMED 312681000). MON-6 (Gourlay 2012, U; design choice):
    untreated osteopenia, interval by lowest T-score (<= -2.0 / -1.5..-1.99 /
    > -1.5 -> osteopenia_dxa_years); needs a DXA date on file. Quiet in a current
    pregnancy: the scan waits until after it (C-SAFE-PREGNANCY speaks for the drug),
    and when a DXA is already ordered (second-pass 7; dxa_ordered)."""
    schedule = dxa_schedule(record, settings)
    if schedule is None or current_pregnancy(record, settings) or dxa_ordered(record, settings):
        return []
    population, months, facts = schedule
    last = record.latest_dxa_date
    if last is None:
        if population == "osteopenia":
            return []
        if not record.t_scores():
            why = "no DXA on file: a baseline is needed to judge the response to treatment"
            due_text = "now (no DXA on file)"
        else:
            why = ("the last DXA's date is not on record (a T-score without a date): a dated baseline is needed "
                   "to judge the response to treatment")
            due_text = "now (DXA date not on record)"
    else:
        due = add_months(last, months)
        if due > today:
            return []
        age = int(months_between(last, today))
        why = f"last DXA on {last}, {age // 12 if age >= 36 else age} {'years' if age >= 36 else 'months'} ago"
        due_text = f"since {due}"
    review = (" At the same visit, review adherence, side effects and fracture risk."
              if population == "therapy" else "")
    return [Finding(
        "C-MON-DXA-DUE",
        facts=(_last_dxa_fact(record), *facts),
        variables={"why": why, "due": due_text, "interval": _interval_text(months),
                   "population": {"therapy": "on osteoporosis treatment", "holiday": "in a bisphosphonate drug holiday",
                                  "osteoporosis": "with osteoporosis",
                                  "osteopenia": "with untreated osteopenia"}[population],
                   "review": review},
    )]


REFILL_CLASSES = frozenset({t.ORAL_BP, t.SERM, t.PTH_ANALOG})  # taken by the patient, refilled monthly


def refill_gap(e: AgentExposure, today: dt.date, settings: ClinicalSettings) -> dt.date | None:
    """The day the supply ran out, when an oral or daily drug's latest active order covered
    less than today - refill_gap_days and nothing newer (order, statement, dose) followed.
    None when there is no gap or the supply cannot be told (no expectedSupplyDuration)."""
    if e.drug_class not in REFILL_CLASSES:
        return None
    orders = [ev for ev in e.events if ev.resource_type == "MedicationRequest" and ev.status in ("active", "on-hold")]
    if not orders:
        return None
    latest = max(orders, key=lambda ev: ev.start or dt.date.min)
    end = latest.supply_end
    if end is None or (today - end).days <= settings.refill_gap_days:
        return None
    if any((ev.start or ev.dose_date or dt.date.min) > end for ev in e.events):
        return None  # renewed, or taken as a statement says, after the supply ran out
    return end


def _calcium_out_of_range(record: PatientRecord, settings: ClinicalSettings, since: dt.date | None):
    """The latest (corrected) calcium within lab_max_age_months, measured on therapy, when outside
    [calcium_lower_mg_dl, calcium_upper_mg_dl]: low on an antiresorptive, high on a PTH analog."""
    ca = calcium(record, settings.lab_max_age_months)
    if ca is None or ca.date is None or (since is not None and ca.date < since):
        return None
    if ca.value < settings.calcium_lower_mg_dl or ca.value > settings.calcium_upper_mg_dl:
        return ca
    return None


@rule("patient-view")
def on_treatment_monitoring(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-MON-ONTX (info). Second-pass 7: on osteoporosis therapy, only when something is
    due or abnormal, never as a standing reminder (the "next DXA" card of the first
    release fired at every visit). Fires for
    - a refill gap: an oral bisphosphonate, SERM or PTH analog whose active order's supply
      (expectedSupplyDuration x fills) ran out more than refill_gap_days (30) ago, with no
      newer order, statement or dose (seed 000: adherence);
    - a new fracture on therapy that C-TX-FAILURE does not take: within
      recent_fracture_months (12), after the drug started (too early to call failure, or
      on an anabolic or estrogen): check adherence and secondary causes (ES19, AACE20);
    - a new calcium out of range: the latest (corrected) calcium within lab_max_age_months,
      drawn after the drug started, below calcium_lower_mg_dl or above calcium_upper_mg_dl.
    A DXA that is due is C-MON-DXA-DUE's (it carries the same review). No order: the card
    asks for a review. New trigger: the date of the gap, fracture or lab."""
    from cds_service.rules.on_therapy import treatment_failure  # the card that owns fractures after 12 months

    therapy = monitored_therapy(record, settings)
    if not therapy:
        return []
    started = min((e.start for e in therapy if e.start), default=None)
    findings: list[tuple[dt.date, str, str, str]] = []  # (date, headline part, fact, check)
    for e in therapy:
        gap = refill_gap(e, today, settings)
        if gap:
            findings.append((gap, f"no {_name(e.agent)} refill since {gap}",
                             f"{_name(e.agent)}: the supply of the active order ran out on {gap}, no refill or "
                             "newer order since", _CHECKS["gap"]))
    if not treatment_failure(record, today, settings):
        for f in record.fragility_fractures():
            if f.date and started and f.date > started and within_months(f.date, today,
                                                                            settings.recent_fracture_months):
                findings.append((f.date, "a fracture on treatment", f"{f.fact()} (on treatment)",
                                 _CHECKS["fracture"]))
    ca = _calcium_out_of_range(record, settings, started)
    if ca:
        low = ca.value < settings.calcium_lower_mg_dl
        findings.append((ca.date, f"{'low' if low else 'high'} calcium", f"{ca.fact()} (normal "  # type: ignore[arg-type]
                         f"{settings.calcium_lower_mg_dl:g}-{settings.calcium_upper_mg_dl:g} mg/dL)",
                         _CHECKS["calcium"]))
    if not findings:
        return []
    last = record.latest_dxa_date
    facts = [*(f[2] for f in findings), *(_therapy_fact(e) for e in therapy), _last_dxa_fact(record)]
    # Review: "next DXA due on or after" now (no DXA on file) or a past date repeated
    # C-MON-DXA-DUE, which owns a DXA that is due.
    due = add_months(last, settings.dxa_interval_months) if last else None
    next_dxa = f"Next DXA due on or after {due.isoformat()}." if due and due > today else ""
    return [Finding("C-MON-ONTX", facts=tuple(facts), trigger=max(f[0] for f in findings),
                    variables={"drugs": ", ".join(_name(e.agent) for e in therapy),
                               "headline": "; ".join(f[1] for f in findings),
                               "checks": "\n".join(dict.fromkeys(f[3] for f in findings)), "next_dxa": next_dxa})]


# What each C-MON-ONTX finding asks the clinician to check (only those that apply are shown).
_CHECKS = {
    "gap": ("- **Refill gap:** ask how the drug is taken; missed doses are the commonest reason treatment\n"
            "  fails. Renew the order, or find out why it was stopped."),
    "fracture": "- **Fracture on treatment:** check adherence and secondary causes (calcium, vitamin D, PTH).",
    "calcium": "- **Calcium out of range:** repeat it with albumin; find the cause before the next dose.",
}


def screening_risk_factors(record: PatientRecord) -> list[str]:
    """MON-4 risk factors readable from the record, as facts: prior fracture,
    smoking, alcohol, low body weight (BMI < 20). Glucocorticoids are not one
    any more: their users go to C-GIOP (USPSTF 2025 excludes secondary
    osteoporosis). Parental hip fracture is not read (no FamilyMemberHistory);
    None (not coded) never counts."""
    out = [f.fact() for f in record.fragility_fractures()]
    if record.smoker is True:
        out.append("Current smoker")
    if record.alcohol_excess is True:
        hit = record.condition_hits("alcohol_excess")
        out.append(f"Alcohol use above recommended limits ({hit[0].code})" if hit else "Alcohol use above recommended limits")
    bmi = record.lab("bmi", 24)
    if bmi and bmi.value < 20:
        out.append(f"{bmi.fact()} (low body weight)")
    return out


def in_palliative_care(record: PatientRecord, settings: ClinicalSettings) -> bool:
    """Hospice or palliative care on record (condition-palliative-care: ICD-10-CM Z51.5, SNOMED CT
    hospice / palliative care codes of the eCQM hospice and palliative-care value sets): an active
    Condition, or a Procedure within done_within_months (a Procedure is a past event: one from
    years ago says nothing about care now)."""
    return any(not h.ref.startswith("Procedure/") or within_months(h.date, record.today, settings.done_within_months)
               for h in record.condition_hits("palliative_care"))


def giop_candidate(record: PatientRecord, settings: ClinicalSettings):
    """C-GIOP population (ACR22, second-pass 5): a man or woman >= giop_min_age on a
    systemic glucocorticoid for >= 3 months at >= giop_min_mg_day prednisone-equivalent
    (an unreadable dose counts: a missing value is not a low one). None otherwise."""
    if record.age is None or record.age < settings.giop_min_age:
        return None
    use = glucocorticoid_use(record, settings)
    if use is None or (use.mg_day is not None and use.mg_day < settings.giop_min_mg_day):
        return None
    return use


@rule("patient-view")
def screening_dxa(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SCREEN-DXA (info). USPSTF25 (final recommendation, JAMA 14 January
    2025): MON-3 woman >= screening_age_women with no DXA on file -> screening
    DXA order (grade B). MON-4 postmenopausal woman younger than that at
    increased risk by a clinical risk tool and no DXA -> risk assessment first
    (FRAX without BMD, OST), then DXA (grade B). MON-5: men never by age alone
    (grade I). Quiet for anyone in the monitoring population (therapy, holiday,
    osteoporosis): C-MON-DXA-DUE covers them. Quiet for long-term
    glucocorticoid users: USPSTF25 does not cover secondary osteoporosis, so
    C-GIOP (ACR22) asks for their DXA without a "risk tool first" step. Quiet when
    a DXA is already ordered (second-pass 7). Quiet in hospice or palliative care
    (in_palliative_care): screening pays off only over years, and second-pass 9
    gives this card the override reason "limited life expectancy" (review 12)."""
    if not record.female or record.age is None or record.latest_dxa_date is not None:
        return []
    if record.t_scores() or record.z_scores():
        return []  # scores without a usable date still mean a DXA was done
    if current_osteoporosis_therapy(record) or in_drug_holiday(record, settings):
        return []
    if assess(record, settings).diagnosis == OSTEOPOROSIS or giop_candidate(record, settings):
        return []
    if dxa_ordered(record, settings):
        return []  # second-pass 7: the screening DXA is ordered already
    if in_palliative_care(record, settings):
        return []  # screening pays off over years (second-pass 9: "limited life expectancy")
    age_fact = f"Woman aged {record.age}"
    if record.age >= settings.screening_age_women:
        return [Finding("C-SCREEN-DXA", facts=(age_fact, "No DXA on file"),
                        variables={"headline": f"woman {settings.screening_age_women} or older with no DXA on file: "
                                               "screening DXA",
                                   "advice": (f"USPSTF 2025 recommends screening for osteoporosis with bone "
                                              f"measurement in women aged {settings.screening_age_women} years or "
                                              "older (grade B).")},
                        suggestions=("dxa",))]
    if record.menopausal_status != "postmenopausal":
        return []
    risks = screening_risk_factors(record)
    if not risks:
        return []
    frax = record.latest_frax("mof", settings.frax_max_age_months)
    facts = [f"{age_fact}, postmenopausal", "No DXA on file", *risks] + ([frax.fact()] if frax else [])
    return [Finding("C-SCREEN-DXA", facts=tuple(facts),
                    variables={"headline": "postmenopausal woman under 65 with a risk factor: assess risk, then DXA",
                               "advice": ("USPSTF 2025 recommends screening postmenopausal women younger than "
                                          f"{settings.screening_age_women} who are at increased risk, as judged by a "
                                          "clinical risk assessment tool (grade B): estimate risk first "
                                          "(FRAX without BMD, or OST), then order DXA if the risk is increased.")},
                    suggestions=("dxa-after-risk-assessment",))]


def _osteopenia_only(record: PatientRecord, settings: ClinicalSettings) -> bool:
    """A bone indication C-SUPP-CAVD stays quiet for (untreated osteopenia, no low intake
    coded: primary prevention), with no vitamin D deficiency (C-VITD-LOW's repletion would
    meet a second vitamin D order). Re-review: C-GIOP left the supplements to C-SUPP-CAVD there
    too, so a steroid user with osteopenia was offered none (ACR22 asks for calcium and
    vitamin D)."""
    from cds_service.rules import supplementation  # a sibling rule module, read at call time

    return (supplementation.untreated_osteopenia(record, settings)
            and not record.condition_hits("low_intake_or_weight")
            and supplementation.vitamin_d_deficient(record, settings) is None)


# Course cards that own the next drug (engine.COURSE_CARDS; C-DMAB-DUE/OVERDUE are
# therapy_under_way already) -> what C-GIOP says in place of its own drug decision.
_NEXT_DRUG_ELSEWHERE = {
    "C-DMAB-STOP": "Denosumab was stopped: the follow-on bisphosphonate is on the denosumab-stop card.",
    "C-ANABOLIC-FOLLOW-ON": "The anabolic course is over: the antiresorptive to follow it is on the follow-on card.",
}


def _next_drug_card(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> str | None:
    """The course card that owns the next drug decision (brief SAFE-14 as second-pass 3
    corrects it; SAFE-12, ACP23 Rec 3), if it fires: C-GIOP steps aside from the drug as the
    engine makes the drug-start cards do beside it (review 12: alendronate beside them)."""
    from cds_service.rules import follow_up  # a sibling rule module, read at call time

    for fn in (follow_up.denosumab_stop, follow_up.anabolic_follow_on):
        found = fn(record, today, settings)
        if found:
            return found[0].card_id
    return None


@rule("patient-view")
def glucocorticoid_osteoporosis(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-GIOP (info; warning with no DXA in the last 12 months and >= giop_high_mg_day),
    ACR22 (2022 ACR guideline for glucocorticoid-induced osteoporosis) via
    second-pass 5: a man or woman >= 40 on prednisone-equivalent >= 2.5 mg/day for
    >= 3 months (current). Fracture-risk assessment with BMD (DXA) if none in the
    last 12 months; calcium and vitamin D; treatment when risk is moderate or high.
    Second-pass 5 said "oral bisphosphonate first"; the 2022 guideline itself does
    not rank the drugs (oral or IV bisphosphonate, denosumab or a PTH analog by
    shared decision-making; an anabolic agent first conditionally at high and very
    high risk), so the card says that and offers alendronate as one option, not the
    first line. Suggestions: the DXA, calcium + vitamin D when not
    on them, alendronate when risk is moderate or high, no bone drug is on board and
    no other card owns the drug start (at high risk C-TX-BP / C-TX-ANABOLIC do; after
    denosumab is stopped or an anabolic course ends C-DMAB-STOP / C-ANABOLIC-FOLLOW-ON do).
    Risk per ACR22 for adults >= 40: high = prior osteoporotic fracture, T <= -2.5
    (>= 50), or glucocorticoid-adjusted FRAX MOF >= 20% / hip >= 3%; moderate =
    adjusted FRAX MOF 10-19% / hip > 1% and < 3%. FRAX is adjusted by x1.15 (MOF)
    and x1.2 (hip) when the dose is > 7.5 mg/day (ACR22)."""
    use = giop_candidate(record, settings)
    if use is None:
        return []
    facts = [f"Age {record.age}, {record.sex or 'sex unknown'}", *use.facts]
    last_dxa = record.latest_dxa_date
    recent_dxa = last_dxa is not None and within_months(last_dxa, today, 12)
    facts.append(f"Last DXA on {last_dxa}" if last_dxa else "No DXA on file")
    ordered_dxa = None if recent_dxa else dxa_ordered(record, settings)
    if ordered_dxa:
        facts.append(ordered_dxa.fact())
    a = assess(record, settings)
    high_dose = use.mg_day is not None and use.mg_day >= settings.giop_high_mg_day
    adjust = use.mg_day is not None and use.mg_day > settings.giop_high_mg_day
    mof = record.latest_frax("mof", settings.frax_max_age_months)
    hip = record.latest_frax("hip", settings.frax_max_age_months)
    mof_adj = mof.percent * (1.15 if adjust else 1.0) if mof else None
    hip_adj = hip.percent * (1.2 if adjust else 1.0) if hip else None
    for frax, value in ((mof, mof_adj), (hip, hip_adj)):
        if frax and value is not None:
            facts.append(frax.fact() + (f" (glucocorticoid-adjusted {value:.1f}%)" if adjust else ""))
    if a.diagnosis == OSTEOPOROSIS or (mof_adj or 0) >= 20 or (hip_adj or 0) >= 3:
        risk = "very high" if a.risk == VERY_HIGH else "high"
        facts += [r for r in a.reasons[:2]]
    elif (mof_adj is not None and mof_adj >= 10) or (hip_adj is not None and hip_adj > 1):
        risk = "moderate"
    else:
        # Low only on a FRAX (clinical review: "low" with a DXA and no FRAX, beside "decide once
        # the DXA and FRAX are known").
        risk = "low" if mof is not None or hip is not None else "not yet assessed"
    on_drug = therapy_under_way(record, settings)  # a denosumab dose due/overdue is a course under way
    current = current_osteoporosis_therapy(record)
    # Review 12: a denosumab course lapsed for years read "On denosumab since ...": "on board" beside
    # the critical C-DMAB-OVERDUE. A due or overdue dose is named as such, its card decides the dose.
    facts += [f"On {e.agent.replace('_', ' ')} since {e.start or 'an unknown date'}" if e in current else
              f"Denosumab last given {e.last_dose or 'on an unknown date'}: a dose is due or overdue"
              for e in on_drug]
    course_card = None if on_drug else _next_drug_card(record, today, settings)
    # Review 21: a current pregnancy (facts.current_pregnancy, the reading C-SAFE-PREGNANCY uses;
    # second-pass 2) defers every osteoporosis drug, as the drug-start cards' pregnancy variant
    # (treatment.pregnancy_deferral) and the course cards say: no alendronate, no "treat" advice,
    # the bone specialist referral (orders.pregnancy_referral). The DXA waits too, as
    # C-MON-DXA-DUE's does in a pregnancy. Calcium and vitamin D stay (ACR22: everyone on
    # long-term glucocorticoids).
    pregnancy = current_pregnancy(record, settings)
    facts += pregnancy
    keys: list[str] = []
    # One order per screen: C-MON-DXA-DUE owns the DXA when it fires, C-SUPP-CAVD the
    # supplements when the patient has a bone indication.
    dxa_elsewhere = bool(dxa_due(record, today, settings))
    if not recent_dxa and not dxa_elsewhere and not ordered_dxa and not pregnancy:
        keys.append("dxa")
    # Second-pass 1 (one kidney reading; third bullet) and 5 (review 20): in dialysis or CKD 4-5
    # (ckd_4_5: coded, or the lower of clearance and eGFR below 30) no bisphosphonate is first
    # line (the oral ones and zoledronic acid are below their label limits; at a clearance within
    # them C-SAFE-RENAL's ckd-stage asks for the CKD-MBD work-up first) and denosumab needs the
    # Prolia 2024 work-up, as C-TX-DMAB-ALT / C-TX-ANABOLIC say on the same screen; no generic
    # calcium tablet or cholecalciferol either (KDIGO 2017 CKD-MBD).
    ckd = ckd_4_5(record, settings)
    kidney_fact_text = f"Kidney function: {'; '.join(ckd.facts)}" if ckd else ""
    on_supplements = all((e := record.medications.get(a)) and e.active for a in ("calcium", "vitamin_d"))
    hold = vitamin_d_repletion_hold(record, settings)  # dialysis / CKD 4-5 or high calcium (second-pass 1)
    if not on_supplements and (not bone_indication(record, settings) or _osteopenia_only(record, settings)):
        if hold:
            facts.append(f"{hold}; no calcium or vitamin D order is suggested")
            kidney_fact_text = ""  # the hold names the kidney reading already
        else:
            keys.append("calcium-vitamin-d")
    # ACR22 (second-pass 5: "treatment when risk is moderate or high; oral bisphosphonate first"):
    # alendronate here unless a drug-start card owns the start (the general rules put the patient
    # at high or very high risk: C-TX-BP / C-TX-ANABOLIC / C-TX-DMAB-ALT) or a guard says no.
    # Review 10: high risk by the dose-adjusted FRAX alone (17.2% / 3.0%) fired no drug card, and
    # this card said "treat" with nothing to order.
    if risk in ("moderate", "high") and not on_drug and not course_card and not a.treatable and not pregnancy:
        blocked = alendronate_not_offered(record, settings) or (
            [f"{ckd.label}: CKD-mineral bone disorder work-up first"] if ckd else [])
        if blocked:
            facts.append(f"No alendronate offered: {'; '.join(blocked)}")
        else:
            keys.append("alendronate")
    offered = "alendronate" in keys
    if kidney_fact_text:
        facts.append(kidney_fact_text)
    referral = None
    if pregnancy:
        from cds_service.rules.treatment import PREGNANCY_ADVICE  # the drug-start cards' words, read at call time

        treatment = "**Current pregnancy:** " + PREGNANCY_ADVICE
        if current or on_drug or course_card or risk in ("moderate", "high", "very high"):
            referral = pregnancy_referral("Long-term glucocorticoids in pregnancy: plan bone treatment after the "
                                          "pregnancy")
        else:
            treatment = ("**Current pregnancy:** no osteoporosis drug during it; assess the risk (DXA, dose-adjusted "
                         "FRAX) after the pregnancy and breastfeeding.")
    elif current:
        treatment = "A bone drug is on board: keep it going while glucocorticoids continue."
    elif on_drug:
        treatment = ("A denosumab dose is due or overdue: the denosumab card decides it; keep the course going "
                     "while glucocorticoids continue.")
    elif course_card:
        treatment = _NEXT_DRUG_ELSEWHERE[course_card]
    elif ckd and risk in ("moderate", "high", "very high"):
        treatment = (f"**Risk is {risk}: treat**, but not with a bisphosphonate first: with {ckd.label} a "
                     "CKD-mineral bone disorder work-up comes before any bone drug (KDIGO 2017; the bisphosphonate "
                     "labels' kidney limits; for denosumab the Prolia boxed warning 2024), and the drug is chosen "
                     "with nephrology or a bone specialist with CKD-MBD expertise.")
    elif risk == "very high":
        # Clinical review: "an anabolic agent first or an antiresorptive" beside C-TX-BP's
        # alendronate read as two answers. The order follows the treatment cards' own reading of
        # risk: very high -> an anabolic agent first (C-TX-ANABOLIC), else an oral
        # bisphosphonate first (C-TX-BP; second-pass 5).
        treatment = ("**Risk is very high: treat**: an anabolic agent first, then an antiresorptive (AACE 2020; ACR "
                     "2022), chosen with the patient.")
    elif risk == "high":
        treatment = ("**Risk is high: treat**: an oral bisphosphonate first, else zoledronic acid, denosumab or an "
                     "anabolic agent (ACR 2022), chosen with the patient"
                     + ("; alendronate 70 mg weekly is offered below." if offered else "."))
    elif risk == "moderate":
        treatment = ("**Risk is moderate: treat**: a bisphosphonate, denosumab or a PTH analog, chosen with the "
                     "patient" + ("; alendronate 70 mg weekly is offered below." if offered else "."))
    elif recent_dxa:
        treatment = "Decide with a dose-adjusted FRAX (the DXA is on file): treat at moderate or high risk."
    else:
        treatment = "Decide once the DXA and dose-adjusted FRAX are known: treat at moderate or high risk."
    # Second-pass 7: only when something is to be done: an order above, a DXA to get, or a
    # treatment decision at moderate or high risk with no bone drug on board.
    # In a pregnancy the DXA waits, so a missing one alone is nothing to do now.
    if not keys and not referral and not (risk in ("moderate", "high", "very high") and not on_drug and not course_card) and (recent_dxa or ordered_dxa or dxa_elsewhere or pregnancy):
        return []
    warning = high_dose and not recent_dxa and not ordered_dxa and not pregnancy
    dose_text = f"{glucocorticoid_mg_text(use.mg_day, settings)} mg/day" if use.mg_day is not None else "a dose not readable from the order"
    return [Finding(
        "C-GIOP", facts=tuple(dict.fromkeys(facts)),
        indicator="warning" if warning else "info",
        variables={"dose": dose_text, "risk": risk, "treatment": treatment,
                   "supplements": (f"Calcium and vitamin D: agreed with nephrology ({ckd.label}; CKD-mineral bone "
                                   "disorder, KDIGO 2017), no generic calcium tablet or vitamin D3 dose."
                                   if ckd else "Calcium from the diet first (a 500 mg tablet for a shortfall); "
                                   "vitamin D3 800-1000 IU daily."),
                   "dxa_text": ("A DXA was done in the last 12 months." if recent_dxa else
                                f"A DXA is ordered ({ordered_dxa.date})." if ordered_dxa else
                                "No DXA in the last 12 months: it waits until after the pregnancy." if pregnancy else
                                "**No DXA in the last 12 months: order one** (fracture-risk assessment with BMD)."),
                   "headline": (f"glucocorticoid {dose_text} for 3+ months, pregnant: no bone drug now" if pregnancy
                                else f"glucocorticoid {dose_text} for 3+ months, no DXA in 12 months"
                                if not recent_dxa else f"glucocorticoid {dose_text} for 3+ months, risk {risk}")},
        suggestions=tuple(keys), extra_suggestions=(referral,) if referral else ())]


# facts.missing_baseline_labs label -> suggestion key in cards/C-LAB-BASELINE.yaml
BASELINE_LAB_KEYS = {"eGFR": "egfr", "serum calcium": "calcium", "25-OH vitamin D": "vitamin-d"}


@rule("patient-view")
def baseline_labs(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-LAB-BASELINE (info). MON-7 (AACE20) and TX-1a: treatment is indicated
    (adult at high or very high risk), the patient is not on therapy or in a
    drug holiday, and eGFR, calcium or 25-OH vitamin D is missing or older
    than lab_max_age_months -> lab orders by LOINC for the missing ones, plus
    optional albumin, phosphate, ALP and PTH. A missing value is unknown, not
    abnormal: this card asks for it, the safety cards wait for it.

    Screen decision: beside C-SECONDARY-EVAL (every man with osteoporosis)
    this card keeps the baseline orders, including the phosphate/ALP/PTH
    extras, and the secondary-cause panel leaves them out, so no test is
    suggested twice on one screen (DESIGN "quiet by default")."""
    missing = baseline_labs_due(record, settings)
    if not missing:
        return []
    a = assess(record, settings)
    keys = [BASELINE_LAB_KEYS[label] for label in missing if label in BASELINE_LAB_KEYS]
    if "calcium" in keys and record.lab("albumin", settings.lab_max_age_months) is None:
        keys.append("albumin")  # to correct the calcium
    # MON-7 asks for these "if not measured in the last 12 months" too: one on record in the lab
    # window is left out (review 12: a PTH on file was ordered again beside C-SECONDARY-EVAL,
    # whose panel leaves the basic labs to this card).
    months = settings.lab_max_age_months
    extras = {"phosphate": record.test_done("phosphate", months), "alkaline-phosphatase": record.lab("alp", months),
              "pth": record.lab("pth", months)}
    extras_done = tuple(name for name, found in extras.items() if found)
    if len(extras_done) < len(extras):
        keys.append("bone-panel-extra")
    facts = [f"Treatment indicated ({'very high' if a.risk == 'very_high' else 'high'} fracture risk): {a.reasons[0]}",
             "No current osteoporosis treatment",
             f"Missing or older than {settings.lab_max_age_months} months: {', '.join(missing)}"]
    for name in ("alp", "pth"):
        lab = record.lab(name, months)
        if lab:
            facts.append(f"{lab.fact()} (recent enough)")
    # Recent results only: an unknown kidney reading's facts are the too-old values listed below,
    # or an eGFR reported only as a bound ("<35"): why an exact one is asked for.
    reading = kidney(record, settings)
    stale_kidney = () if reading.known else reading.facts
    facts += [f"{fact} (recent enough)" for fact in lab_facts(record, settings) if fact not in stale_kidney]
    if not reading.known and reading.value is not None:
        facts += reading.facts
    for name in ("egfr", "calcium", "vitamin_d"):
        latest = record.lab(name)  # any age: say what is on file and how old it is
        if latest and not within_months(latest.date, today, settings.lab_max_age_months):
            why = abnormal_then(latest, settings)
            facts.append(f"{latest.fact()} (too old{f'; it was {why}: recheck it' if why else ''})")
    return [Finding("C-LAB-BASELINE", facts=tuple(facts),
                    variables={"missing": ", ".join(missing), "max_age": str(settings.lab_max_age_months)},
                    suggestions=tuple(keys), left_out=extras_done)]
