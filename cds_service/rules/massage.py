"""Massage-therapy safety (brief MASS-1; seed 002; card C-MASSAGE-SAFETY).

Rule: `massage_safety` on order-select (selected drafts) and order-sign (every
draft). A massage draft is a ServiceRequest for CPT 97124, a referral to a
massage therapist (NUCC 225700000X in code or performerType) or a name match
"massage" (record.DraftOrder.kind == "massage").

- Osteoporosis or osteopenia (diagnosis helper, or coded on the problem list),
  or a fragility fracture on file: **warning** with the seed's technique
  guidance (what to avoid, what is appropriate, positioning) and the modifiers
  that apply (anticoagulant, long-term corticosteroid, fragile skin).
- A fracture with onset <= settings.fresh_fracture_weeks (12, a project
  choice): **critical**, never massage over or near a fresh fracture site;
  physician clearance first. Any fracture counts here, not only fragility
  fractures: the seed says "do not treat over fresh fractures", whatever their
  cause (clinician review item).

Suggestion: an `update` of the draft itself with the precautions added to its
`note` (the resource in its entirety, as CDS Hooks requires for update). An
update keeps the draft's id, so the EHR edits the order in place; a
delete + create pair would replace the clinician's draft and leave a
duplicate or nothing if a client applies only part of it. A draft without an
id cannot be updated: the card then carries no suggestion.
A draft that already carries the precautions note is quiet unless there is a
fresh fracture (the warning has been acted on).
"""

from __future__ import annotations

import copy
import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import DraftOrder, Fracture, PatientRecord, within_months
from cds_service.rules.base import Action, Finding, Suggestion, rule
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, assess
from cds_service.rules.settings import ClinicalSettings

CARD = "C-MASSAGE-SAFETY"
NOTE_MARK = "Osteoporosis massage precautions"  # first words of the note we add; seen again = already done

# Seed 002, in the words the therapist reads on the order.
AVOID = ("deep tissue massage, vigorous compression, joint mobilisation, deep kneading, muscle stripping, "
         "friction, forceful or passive stretching, and high pressure near osteoporotic regions "
         "(spine, ribs, hips, wrists)")
APPROPRIATE = ("gentle Swedish massage (light effleurage, mild kneading, vibration), myofascial release, "
               "reflexology, lymphatic drainage, craniosacral therapy; supported positioning "
               "(chair, bolsters, side-lying) to protect the spine and hips")


def _weeks_ago(day: dt.date, today: dt.date) -> int:
    return (today - day).days // 7


def _fresh_fractures(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Fracture]:
    """Fractures with a known onset no more than fresh_fracture_weeks ago (undated: unknown, not fresh)."""
    limit = settings.fresh_fracture_weeks * 7
    return [f for f in record.fractures if f.date is not None and 0 <= (today - f.date).days <= limit]


def _bone_facts(record: PatientRecord, settings: ClinicalSettings) -> tuple[str | None, list[str]]:
    """(condition word, facts) when bones are fragile: osteoporosis, osteopenia, fragility fracture."""
    a = assess(record, settings)
    if a.diagnosis in (OSTEOPOROSIS, OSTEOPENIA):
        return a.diagnosis, [f"{a.diagnosis.capitalize()}: {r}" for r in a.reasons[:3]]
    for group in (OSTEOPOROSIS, OSTEOPENIA):  # coded, when the diagnosis helper could not classify
        hits = record.condition_hits(group)
        if hits:
            return group, [f"{group.capitalize()} on the problem list ({hits[0].code}, {hits[0].date or 'undated'})"]
    fragility = record.fragility_fractures()
    if fragility:
        return "a fragility fracture", [f.fact() for f in fragility[-2:]]
    return None, []


def _modifiers(record: PatientRecord, settings: ClinicalSettings) -> list[tuple[str, str]]:
    """(modifier, fact) for seed 002's "modify techniques if on anticoagulants,
    corticosteroids, or fragile skin", each with the record entry behind it."""
    out = []
    if record.anticoagulant:
        e = next(e for e in record.active_agents([t.ANTICOAGULANT]))
        out.append(("anticoagulant (bruising and bleeding risk: light pressure, no deep or sustained compression)",
                    f"Active anticoagulant since {e.start or 'an unknown date'} ({e.events[-1].ref})"))
    if record.long_term_corticosteroid:
        steroid = [e for e in record.active_agents([t.CORTICOSTEROID])
                   if e.start and (record.today - e.start).days >= settings.long_term_corticosteroid_days]
        if steroid:
            e = steroid[0]
            fact = (f"Systemic corticosteroid since {e.start} ({(record.today - e.start).days} days: long-term)"
                    f" ({e.events[-1].ref})")
        else:
            hit = (record.condition_hits("long_term_steroids") or record.condition_hits("glucocorticoid_osteoporosis"))[0]
            fact = f"Long-term corticosteroid use on the problem list ({hit.code}, {hit.date or 'undated'})"
        out.append(("long-term corticosteroid (thin skin and bone: lighter pressure)", fact))
    if record.fragile_skin:
        hit = record.condition_hits("fragile_skin")[0]
        out.append(("fragile skin (gentle pressure, no friction or skin stretching)",
                    f"Fragile skin on the problem list ({hit.code}, {hit.date or 'undated'})"))
    return out


def _add_or_mark(facts: list[str], fact: str, when: str) -> None:
    """Mark a fact already listed (e.g. as a diagnosis reason) with `when`, else add it."""
    for i, existing in enumerate(facts):
        if fact in existing:
            facts[i] = f"{existing} ({when})"
            return
    facts.append(f"{fact} ({when})")


def _has_precautions(draft: DraftOrder) -> bool:
    notes = draft.resource.get("note") or []
    return any(isinstance(n, dict) and NOTE_MARK.lower() in str(n.get("text", "")).lower() for n in notes)


def _note(condition: str, fresh: list[Fracture], modifiers: list[tuple[str, str]], today: dt.date) -> str:
    parts = [f"{NOTE_MARK} (patient has {condition}). Avoid: {AVOID}. Appropriate: {APPROPRIATE}."]
    if modifiers:
        parts.append("Modify technique: " + "; ".join(m for m, _ in modifiers) + ".")
    for f in fresh:
        site = "" if f.site == t.OTHER else f"{f.site} "
        parts.append(f"FRESH {site.upper()}FRACTURE on {f.date} ({_weeks_ago(f.date, today)} weeks): "  # type: ignore[arg-type]
                     "never massage over or near the fracture site; physician clearance required before treatment.")
    if not fresh:
        parts.append("Physician clearance needed after any recent fracture or surgery.")
    return " ".join(parts)


def _update(draft: DraftOrder, note: str, today: dt.date) -> Suggestion:
    resource = copy.deepcopy(dict(draft.resource))
    resource.setdefault("note", [])
    resource["note"] = list(resource["note"]) + [{"time": today.isoformat(), "text": note}]
    return Suggestion("Add the osteoporosis massage precautions to this massage order",
                      (Action("update", "Massage order with the osteoporosis technique precautions in its note",
                              resource=resource),), is_recommended=True)


@rule("order-select", "order-sign")
def massage_safety(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-MASSAGE-SAFETY (warning / critical), MASS-1 (brief 6; SEED 002; TFTF):
    massage ordered for a patient with osteoporosis, osteopenia or a fragility
    fracture -> technique guidance; a fracture within fresh_fracture_weeks ->
    critical, never massage over or near it."""
    drafts = [d for d in record.judged_drafts if d.kind == "massage"]
    if not drafts:
        return []
    draft = next((d for d in drafts if not _has_precautions(d)), drafts[0])  # the one still lacking the note
    fresh = _fresh_fractures(record, today, settings)
    condition, facts = _bone_facts(record, settings)
    if condition is None and not fresh:
        return []  # normal or unknown bone status: a missing value is not abnormal
    if not fresh and all(_has_precautions(d) for d in drafts):
        return []
    condition = condition or "a recent fracture"
    modifiers = _modifiers(record, settings)

    facts = [f"Massage order: {draft.reference or draft.resource_type} (draft)"] + facts
    recent = [f for f in record.fractures if f not in fresh and within_months(f.date, today, settings.recent_fracture_months)]
    for f in fresh + recent:
        when = (f"{_weeks_ago(f.date, today)} weeks ago" if f in fresh  # type: ignore[arg-type]
                else f"within {settings.recent_fracture_months} months")
        _add_or_mark(facts, f.fact(), when)
    facts += [fact for _, fact in modifiers]

    if fresh:
        f = fresh[-1]
        site = "" if f.site == t.OTHER else f"{f.site} "
        headline = (f"fresh {site}fracture {_weeks_ago(f.date, today)} weeks ago: "  # type: ignore[arg-type]
                    "never massage over or near it; physician clearance first")
        clearance = (f"**Fresh fracture (within {settings.fresh_fracture_weeks} weeks): never massage over or near the fracture site.** "
                     "Physician clearance is required before the first session.")
    else:
        headline = f"patient has {condition}: gentle techniques only, no deep pressure near spine, ribs, hips"
        clearance = ("**Physician clearance** is needed after a recent fracture (listed below) before massage near it."
                     if recent else
                     "**Physician clearance** is needed after any recent fracture or surgery (no fracture within "
                     f"{settings.recent_fracture_months} months on record; surgery is not checked).")
    mod_text = ("\n".join(f"- **Modify technique: {m}.**" for m, _ in modifiers) if modifiers else
                "- No anticoagulant, long-term corticosteroid or fragile-skin entry on record.")

    extra: tuple[Suggestion, ...] = ()
    if draft.id:
        extra = (_update(draft, _note(condition, fresh, modifiers, today), today),)
    return [Finding(
        CARD, facts=tuple(facts),
        variables={"headline": headline, "condition": condition, "clearance": clearance, "modifiers": mod_text,
                   "fresh_fracture_weeks": str(settings.fresh_fracture_weeks)},
        indicator="critical" if fresh else "warning",
        suggestions=("cancel",) if fresh and draft.reference else (),
        extra_suggestions=extra,
        delete_draft=draft.reference or None,
    )]
