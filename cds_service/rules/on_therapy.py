"""Events on therapy (../shared/clinical/second-pass.md section 4; card family a).

Rules:
  C-TX-FAILURE        warning  patient-view       fracture(s) on an antiresorptive: possible treatment failure
  C-AR-COMPLICATION   warning  PV + order hooks   atypical femoral fracture or jaw osteonecrosis with a
                                                  bisphosphonate or denosumab on board or being ordered
"""

from __future__ import annotations

import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import AgentExposure, Fracture, PatientRecord, within_months
from cds_service.rules.base import Action, Finding, Suggestion, rule
from cds_service.rules.facts import (
    DUE,
    OVERDUE,
    DmabTiming,
    very_long_bp_course,
    anabolic_options,
    antiresorptive_complications,
    complication_name,
    course_start,
    denosumab_stop_order,
    denosumab_timing,
    draft_fact,
    drug_label,
    drug_title,
    months_to_days,
    on_board,
    ordered,
)
from cds_service.rules.orders import ENDOCRINOLOGY, ORAL_SURGERY, ORTHOPAEDICS
from cds_service.rules.orders import referral_suggestion as _refer
from cds_service.rules.orders import stop_actions, stop_suggestion
from cds_service.rules.settings import ClinicalSettings

ORDERS = ("order-select", "order-sign")

def _effect_end(e: AgentExposure, today: dt.date) -> dt.date:
    """Last day the drug still acts: today while active, else the end of the course plus
    one dosing interval (a zoledronic acid infusion covers a year, denosumab 6 months)."""
    if e.active:
        return today
    end = e.stopped or e.last_dose or e.start or today
    return end + dt.timedelta(days=max((ev.interval for ev in e.events), default=t.AGENTS[e.agent].dosing_interval_days))


def _named(fractures: list) -> str:
    """The fractures' sites and dates, newest first: "vertebral fracture on 2026-05-01"."""
    return " and ".join(f"{'' if f.site == t.OTHER else f.site + ' '}fracture on {f.date}"
                        for f in sorted(fractures, key=lambda f: f.date, reverse=True))


_COUNT = {2: "two", 3: "three", 4: "four"}


def _fractures_on_therapy(record: PatientRecord, e: AgentExposure, start: dt.date, today: dt.date,
                          settings: ClinicalSettings) -> tuple[list[Fracture], list[Fracture]]:
    """The fragility fractures on this course, oldest first, one per site and date: (every one
    dated after it started and while the drug acts (_effect_end), those of them dated
    tx_failure_months (12) or more after the start). A fracture on or before the start day is
    the one that led to the treatment, not a fracture on it."""
    lag = months_to_days(settings.tx_failure_months)
    end = _effect_end(e, today)
    seen: dict[tuple[str, dt.date], Fracture] = {}
    for f in record.fragility_fractures():
        if f.date and start < f.date <= end:
            seen.setdefault((f.site, f.date), f)
    during = sorted(seen.values(), key=lambda f: f.date)  # type: ignore[arg-type, return-value]
    return during, [f for f in during if (f.date - start).days >= lag]  # type: ignore[operator]


@rule("patient-view")
def treatment_failure(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-TX-FAILURE (warning), second-pass 4; AACE20 (a fracture on therapy is very high
    risk; consider a switch, an anabolic agent first), ES19 (re-assess after a fracture on
    therapy). For an antiresorptive (bisphosphonate, denosumab, raloxifene; not an oncology
    product), a fragility fracture is "on therapy" when dated after the current course started
    (not on its first day: that one led to it) and while the drug acts (active, or within one
    dosing interval of the last dose). Clauses (second-pass 4: "a new fragility fracture dated
    >= 12 months after ... or two fractures on therapy"):
    - two fractures on therapy (different site or date), the newest a new one (within
      tx_failure_window_months, 24), whenever in the course: the contract sets no 12-month bar
      for this clause (review 18; review 17's objection was the card calling such fractures
      "12 months or more into the course": the words now say "during the course");
    - two fractures each >= tx_failure_months (12) into the course while the drug is still
      active, whatever their age (review 16: a man with two fractures on 23 years of
      alendronate, 2017 and 2024, got only C-HOLIDAY's duration review; a failure not acted on
      stays one). Both: variant "two-fractures", naming the drug and the dates. A drug no
      longer active needs the newest within recent_fracture_months.
    - a NEW fracture on therapy: one dated within tx_failure_window_months (24) of today; an
      older single fracture was known and acted on (review 13: a vertebral fracture 4 years ago
      on alendronate raised this warning at every chart open). The drug is still active or the
      fracture is within recent_fracture_months.
    Check adherence and secondary causes, consider a switch. Suggests a bone specialist
    referral (endocrinology)."""
    for e in record.exposures(t.ANTIRESORPTIVE_CLASSES):
        start = course_start(e)
        if e.oncology_only or start is None:
            continue
        during, late = _fractures_on_therapy(record, e, start, today, settings)
        if not during:
            continue
        if not e.active and not within_months(during[-1].date, today, settings.recent_fracture_months):
            continue
        if len(late) >= 2 and e.active:
            on_therapy = late  # a failure not acted on: whatever the fractures' age
        elif len(during) >= 2 and within_months(during[-1].date, today, settings.tx_failure_window_months):
            on_therapy = during  # second-pass 4: "or two fractures on therapy", the newest a new one
        elif late and within_months(late[-1].date, today, settings.tx_failure_window_months):
            on_therapy = late[-1:]
        else:
            continue
        newest = on_therapy[-1]
        several = len(on_therapy) >= 2
        facts = [f"On {drug_label(e.agent)} since {start}" + (", still active" if e.active else
                                                              f", last dose {e.last_dose or e.stopped}")]
        facts += [f"{f.fact()}: {(f.date - start).days // 30} months into the course" for f in on_therapy]
        if e.drug_class in t.BISPHOSPHONATE_CLASSES:
            facts += very_long_bp_course(record, settings)  # C-HOLIDAY's duration review steps aside for this card
        options, excluded = anabolic_options(record, settings)
        switch = (f"An anabolic agent is the usual switch at this risk ({', '.join(options)}), then an "
                  "antiresorptive (AACE 2020)." if options else
                  "No anabolic agent can be suggested from the record (" + "; ".join(excluded) + "): a bone "
                  "specialist chooses the switch.")
        variables = {"drug": drug_label(e.agent), "switch": switch}
        if several:
            count = _COUNT.get(len(on_therapy), str(len(on_therapy)))
            first, last = on_therapy[0].date, newest.date
            variables |= {"count": count.capitalize(), "fractures": f"{count} fractures",
                          "dates": f"{first} and {last}" if len(on_therapy) == 2 else f"{first} to {last}",
                          "why": _named(on_therapy),
                          # True words only: fractures in the course's first year are on it too (review 18).
                          "timing": (", each 12 months or more into the course" if all(f in late for f in on_therapy)
                                     else ", during the course"),
                          "state": (f"{drug_label(e.agent)} goes on" if e.active else
                                    f"the last dose was on {e.last_dose or e.stopped}")}
        else:
            variables["why"] = f"a new {_named([newest])}, 12 months or more into the course"
        return [Finding("C-TX-FAILURE", facts=tuple(facts), variables=variables,
                        variant="two-fractures" if several else None,
                        suggestions=(),
                        extra_suggestions=(_refer(ENDOCRINOLOGY, "Refer to a bone specialist (endocrinology)",
                                                  f"{'Fractures' if several else 'Fracture'} on "
                                                  f"{drug_label(e.agent)}: possible treatment failure",
                                                  True),))]
    return []


def _complication_variables(agent: str, complications: list[str]) -> dict[str, str]:
    denosumab = agent == "denosumab"
    return {
        "drug": drug_title(agent), "drug_name": drug_label(agent),
        "complication": complication_name(complications),
        "next_step": ("refer; never stop it without a follow-on plan" if denosumab else
                   "hold it and refer to a bone specialist"),
        "advice": ("Denosumab is never simply stopped: bone turnover rebounds when it wears off and vertebral "
                   "fractures can follow. Whether to continue it, or to stop it with a follow-on plan "
                   "(e.g. a bisphosphonate, or an anabolic agent), is a bone specialist's decision; do not let "
                   "the next dose lapse while that is decided." if denosumab else
                   "Hold the bisphosphonate (do not give further doses) and refer; a bone specialist decides "
                   "what, if anything, follows."),
    }


def _complication_referrals(complications: list[str], agent: str) -> tuple[Suggestion, ...]:
    reason = f"{'; '.join(complications)} on {drug_label(agent)}"
    out = [_refer(ENDOCRINOLOGY, "Refer to a bone specialist (endocrinology) for the treatment plan", reason, True)]
    if any("femoral" in c for c in complications):
        out.append(_refer(ORTHOPAEDICS, "Refer to orthopaedics (atypical femoral fracture)", reason))
    if any("jaw" in c for c in complications):
        out.append(_refer(ORAL_SURGERY, "Refer to oral surgery (osteonecrosis of the jaw)", reason))
    return tuple(out)


AR_AGENTS = ("alendronate", "risedronate", "ibandronate", "zoledronic_acid", "denosumab")


@rule("patient-view")
def antiresorptive_complication_active(record: PatientRecord, today: dt.date,
                                       settings: ClinicalSettings) -> list[Finding]:
    """C-AR-COMPLICATION (warning) on patient-view, second-pass 4: a coded atypical
    femoral fracture (M84.75-) or osteonecrosis of the jaw (M87.18-) while a
    bisphosphonate or denosumab is on board (LABEL: Fosamax, Reclast, Prolia warnings;
    AACE20). The bisphosphonate is held and the patient referred; denosumab is never
    simply stopped, it needs a follow-on plan. Review: denosumab whose next dose is due or
    overdue is still on board (facts.on_board): the decision is due exactly then. Review 16:
    "hold it" comes with the order that holds a bisphosphonate, first and recommended (its
    active orders marked stopped, rules.orders.stop_suggestion); none for denosumab."""
    complications = antiresorptive_complications(record)
    active = on_board(record, settings, t.BISPHOSPHONATE_CLASSES | {t.DENOSUMAB})
    if not complications or not active:
        return []
    e = active[0]
    hold: tuple[Suggestion, ...] = ()
    if e.drug_class in t.BISPHOSPHONATE_CLASSES:
        # "Hold it" with the order that does it (review 16): its active orders marked stopped,
        # first and recommended; none when it is on record only as a statement or a dose given.
        name = drug_label(e.agent)
        stop = stop_suggestion(record, e.agent, name, f"Hold {name}: stop its active order",
                               f"Held: {complication_name(complications)} on record", recommended=True)
        hold = (stop,) if stop else ()
    variables = _complication_variables(e.agent, complications)
    both = [o for o in active[1:] if o.agent == "denosumab"] if e.drug_class in t.BISPHOSPHONATE_CLASSES else []
    if both:  # review 17, s07: the card named only the bisphosphonate
        variables["advice"] += (" Denosumab is on board too: it is never simply stopped (bone turnover rebounds); "
                                "whether it continues, or stops with a follow-on plan, is the bone specialist's "
                                "decision.")
    on = tuple(_on_fact(record, settings, o) for o in (e, *both))
    lapsing = _denosumab_lapsing(record, settings) if e.agent == "denosumab" else None
    if lapsing and lapsing.phase == OVERDUE:
        # Review 21: "do not let the next dose lapse" on a course whose dose is overdue already.
        variables["advice"] = variables["advice"].replace(
            "do not let the next dose lapse while that is decided",
            f"the next dose is overdue already (due on {lapsing.due}): decide it now, the rebound may be under way")
    variant = None
    stopped = denosumab_stop_order(record) if e.agent == "denosumab" else None
    timing = denosumab_timing(record, settings) if stopped else None
    if stopped and timing:
        # Review 20 (L1): a stopped denosumab whose last dose still acts read "on board", "on
        # denosumab since <the last dose>": the stop, the last dose and when it wears off instead.
        variant = "denosumab-stopped"
        on = (f"Denosumab order {stopped.status} ({stopped.ref}, dated {stopped.start or 'an unknown date'})",
              f"Last denosumab dose on {timing.last_dose}; it acts until about {timing.due} (6 months)")
        variables.update(last_dose=timing.last_dose.isoformat(), wears_off=timing.due.isoformat())
    return [Finding("C-AR-COMPLICATION", facts=(*on, *complications), variant=variant,
                    variables=variables, suggestions=(),
                    extra_suggestions=(*hold, *_complication_referrals(complications, e.agent)),
                    source_url=t.label_url(e.agent))]


def _denosumab_lapsing(record: PatientRecord, settings: ClinicalSettings) -> DmabTiming | None:
    """The denosumab timing when its next dose is due or overdue with no explicit stop (the
    lapsing course facts.on_board counts as on board), else None."""
    timing = denosumab_timing(record, settings)
    if timing and timing.phase in (DUE, OVERDUE) and denosumab_stop_order(record) is None:
        return timing
    return None


def _on_fact(record: PatientRecord, settings: ClinicalSettings, e: AgentExposure) -> str:
    """What C-AR-COMPLICATION says of a drug on board. Review 21: a denosumab course whose dose is
    due or overdue (facts.on_board keeps it on board) read "On denosumab since <the date of its only
    dose>": the last dose and since when the next one is due or overdue instead (the dose timing
    C-DMAB-DUE / C-DMAB-OVERDUE use: 6 months, then the grace weeks; ECTS21, Prolia label)."""
    lapsing = _denosumab_lapsing(record, settings) if e.agent == "denosumab" else None
    if lapsing is None:
        return f"On {drug_label(e.agent)} since {e.start or 'an unknown date'}"
    course = (f"Denosumab since {e.start}, last given" if e.start and e.start < lapsing.last_dose else
              "Denosumab last given")
    state = (f"was due on {lapsing.due}, overdue since {lapsing.grace_end + dt.timedelta(days=1)}"
             if lapsing.phase == OVERDUE else f"is due (since {lapsing.due}, by {lapsing.grace_end})")
    return f"{course} on {lapsing.last_dose} ({lapsing.days_since} days ago): the next dose {state}"


@rule(*ORDERS, cards=("C-AR-COMPLICATION",))
def antiresorptive_complication_order(record: PatientRecord, today: dt.date,
                                      settings: ClinicalSettings) -> list[Finding]:
    """C-AR-COMPLICATION (warning) on order hooks, second-pass 4: a bisphosphonate or
    denosumab ordered for a patient with a coded atypical femoral fracture or jaw
    osteonecrosis. A bisphosphonate draft: suggest removing it (recommended) or a
    referral. A denosumab draft: the referral comes first (recommended) and removal is
    offered second, because stopping denosumab needs a follow-on plan; a denosumab draft
    with none on board (a new start) has its own text (_new_denosumab_variables). The same
    bisphosphonate drafted while on board (a renewal, review 18): the hold stops its active
    order and removes the draft, in one recommended suggestion. Another bone
    drug ordered with a bisphosphonate on board: the hold of that bisphosphonate
    (_held_beside_other_order, review 17)."""
    complications = antiresorptive_complications(record)
    if not complications:
        return []
    findings = []
    dmab_on_board = bool(on_board(record, settings, {t.DENOSUMAB}))
    held = on_board(record, settings, t.BISPHOSPHONATE_CLASSES)
    for draft, agent in ordered(record, AR_AGENTS):
        referrals = _complication_referrals(complications, agent)
        keys: tuple[str, ...] = ()
        variables = _complication_variables(agent, complications)
        facts = [draft_fact(draft, agent), *complications]
        if agent == "denosumab" and not dmab_on_board:
            variables.update(_new_denosumab_variables(complications, held))
            facts += [f"On {drug_label(e.agent)} since {e.start or 'an unknown date'}" for e in held]
        renewal = [e for e in held if e.agent == agent]
        stop = stop_actions(record, agent, drug_label(agent),
                            f"Held: {complication_name(complications)} on record") if renewal else ()
        if stop:
            # Review 18 (n17): a renewal drafted while the same bisphosphonate is on board; removing
            # the draft left the active order running (C-DUP-ANTIRES, which stops a different one, is silent).
            name = drug_label(agent)
            facts.append(f"On {name} since {renewal[0].start or 'an unknown date'}")
            referrals = (Suggestion(f"Hold {name}: stop its active order" + (
                " and remove the draft" if draft.reference else ""),
                (*stop, *((Action("delete", f"Remove the draft {name} order", resource_id=(draft.reference,)),)
                          if draft.reference else ())), True), *referrals)
        elif draft.reference and agent != "denosumab":
            keys = ("remove",)  # hold the bisphosphonate: first and recommended
        elif draft.reference:
            # Continuing denosumab, removal is last and needs a plan; a first dose removed stops nothing.
            label = ("(only with a follow-on plan agreed)" if dmab_on_board else
                     "(not yet given: nothing wears off)")
            referrals += (Suggestion(f"Remove the draft {drug_label(agent)} order {label}",
                                     (Action("delete", f"Remove the draft {drug_label(agent)} order",
                                             resource_id=(draft.reference,)),)),)
        findings.append(Finding("C-AR-COMPLICATION", facts=tuple(facts), variables=variables,
                                suggestions=keys, extra_suggestions=referrals, delete_draft=draft.reference or None,
                                source_url=t.label_url(agent)))
    if not findings and held:
        findings += _held_beside_other_order(record, complications, held[0])
    return _every_bisphosphonate_draft(findings, complications)


def _every_bisphosphonate_draft(findings: list[Finding], complications: list[str]) -> list[Finding]:
    """Two or more bisphosphonate drafts removed (review 19, e10: alendronate and zoledronic
    acid drafted after an atypical femoral fracture; one card per id, so only the first draft
    was named and removed): one finding names them all and one recommended suggestion removes
    every one of them (hold the bisphosphonate, second-pass 4; LABEL Fosamax/Reclast, AACE20)."""
    removed = [f for f in findings if f.suggestions == ("remove",)]
    if len(removed) < 2:
        return findings
    names = list(dict.fromkeys(f.variables["drug_name"] for f in removed))
    words = " and ".join(names)
    variables = {**removed[0].variables, "drug": words[:1].upper() + words[1:],
                 "drug_name": f"a bisphosphonate ({words})", "next_step": "hold them and refer to a bone specialist"}
    hold = Suggestion(f"Hold them: remove the draft {words} orders",
                      tuple(Action("delete", f"Remove the draft {f.variables['drug_name']} order",
                                   resource_id=(f.delete_draft,)) for f in removed), True)
    merged = Finding("C-AR-COMPLICATION",
                     facts=tuple(dict.fromkeys(x for f in removed for x in f.facts)), variables=variables,
                     suggestions=(), extra_suggestions=(hold, *removed[0].extra_suggestions),
                     source_url=removed[0].source_url)
    return [merged if f is removed[0] else f for f in findings if not any(f is r for r in removed[1:])]


OTHER_BONE_AGENTS = tuple(a for a, agent in t.AGENTS.items()
                          if agent.drug_class in t.OSTEOPOROSIS_DRUG_CLASSES and a not in AR_AGENTS)


def _held_beside_other_order(record: PatientRecord, complications: list[str],
                             e: AgentExposure) -> list[Finding]:
    """C-AR-COMPLICATION on an order hook when the bisphosphonate is ON BOARD and the drug
    ordered is another bone drug (review 17, o05: romosozumab ordered after an atypical femoral
    fracture on alendronate; no card, so the alendronate stayed active beside the anabolic).
    Second-pass 4: the card is for a patient "on, or being ordered" a bisphosphonate: hold it
    (LABEL Fosamax/Actonel/Boniva/Reclast, AACE20), with the order that does it first and
    recommended (rules.orders.stop_suggestion), as on patient-view, and the referrals."""
    drafts = ordered(record, OTHER_BONE_AGENTS)
    if not drafts:
        return []
    name = drug_label(e.agent)
    stop = stop_suggestion(record, e.agent, name, f"Hold {name}: stop its active order",
                           f"Held: {complication_name(complications)} on record", recommended=True)
    variables = _complication_variables(e.agent, complications)
    new = " and ".join(dict.fromkeys(drug_label(a) for _, a in drafts))
    variables["advice"] += f" Ordering {new} does not stop {name}: hold it too."
    return [Finding("C-AR-COMPLICATION",
                    facts=(*(draft_fact(d, a) for d, a in drafts),
                           f"On {name} since {e.start or 'an unknown date'}", *complications),
                    variables=variables, suggestions=(),
                    extra_suggestions=((stop,) if stop else ()) + _complication_referrals(complications, e.agent),
                    source_url=t.label_url(e.agent))]


def _new_denosumab_variables(complications: list[str], held: list[AgentExposure]) -> dict[str, str]:
    """C-AR-COMPLICATION's text for a denosumab order that would START it (none on board;
    review 16: the card said "never stop it without a follow-on plan" of a drug never
    given). The rebound (Prolia label: multiple vertebral fractures after discontinuation)
    needs a dose given to wear off, so removing this draft stops nothing. What the card
    says instead: the Prolia label lists the same complications (atypical femoral
    fractures, osteonecrosis of the jaw), so denosumab is no risk-free replacement for a
    bisphosphonate; once started it cannot simply be stopped; the next agent is a bone
    specialist's choice (second-pass 4: refer). A bisphosphonate on board is held
    (second-pass 4; Fosamax/Actonel/Boniva/Reclast labels, AACE20): C-DUP-ANTIRES, which
    fires beside it on the same order, offers stopping it."""
    what = complication_name(complications)
    hold = "".join(f" Hold {drug_label(e.agent)} (no further doses): stop its order." for e in held)
    return {
        "next_step": "a new start with the same labelled risk; agree it with a bone specialist",
        "advice": (f"This order would start denosumab: none is on board, so removing the draft stops nothing and "
                   f"no rebound follows. The Prolia label lists the same complications ({what} included), so "
                   "denosumab is not a risk-free replacement, and once started it cannot simply be stopped (bone "
                   "turnover rebounds when it wears off). Whether denosumab, another agent (such as an anabolic "
                   f"agent) or none follows is a bone specialist's decision.{hold}"),
    }
