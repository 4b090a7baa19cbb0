"""Massage and manual-therapy safety (brief MASS-1; seed 002; second-pass 6;
card C-MASSAGE-SAFETY).

Rule: `massage_safety` on order-select (selected drafts) and order-sign (every
draft). A hands-on draft is either massage (CPT 97124, a referral to a massage
therapist, the word "massage") or manual therapy (CPT 97140 mobilisation /
manipulation, chiropractic 98940-98943, osteopathic 98925-98929, a referral to
a chiropractor or osteopath, or those words): record.DraftOrder.kind "massage" /
"manual_therapy".

Critical:
- a fracture with onset <= settings.fresh_fracture_weeks (12, a project
  choice): never treat over or near a fresh fracture (SEED); any fracture counts
  (the seed says "fresh fractures", whatever their cause). So does a fracture
  whose later-encounter code (ICD-10-CM 7th character D to R: routine or delayed
  healing, nonunion, malunion) was recorded within that window, whatever its
  onset: it was still healing then. A sequela code (S) is a healed fracture;
- spinal manipulation or joint mobilisation near the spine, hips or wrists with
  osteoporosis or a vertebral fracture (SEED: avoid joint mobilisation near
  osteoporotic regions). The site is the draft's bodySite; spinal CPT codes are
  spinal; no site named counts as "near" (unknown is not safe here).
Warning (each with what to do):
- osteoporosis, osteopenia or a fragility fracture (technique guidance);
- bone metastases or skeletal malignancy (no pressure over lesions);
- an open wound, an active skin or soft-tissue infection, or surgery within
  recent_surgery_weeks (12): not over wounds, infections or post-surgical sites
  unless cleared (SEED).
Always stated when they apply: kyphosis or vertebral fracture -> positioning
(no unsupported prone; side-lying or seated with bolsters); passive stretching
"careful, never forceful" (SEED); the modifiers for anticoagulants, long-term
corticosteroids and fragile skin.

Suggestion: an `update` of the draft itself with the precautions added to its
`note` and a patientInstruction (report new pain, change in mobility or injury
promptly). An update keeps the draft's id, so the EHR edits the order in place;
a draft without an id cannot be updated: the card then carries no suggestion. A
draft that already carries the precautions note is quiet unless there is a
critical finding (the warning has been acted on). Manipulation or mobilisation
near fragile bone (critical): removing the draft is the recommended suggestion;
for a spinal manipulation code (chiropractic, osteopathic) it is the only one,
since the order is the manipulation itself.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from typing import NamedTuple

from cds_service.card_render import SUMMARY_MAX
from cds_service.fhir import terminology as t
from cds_service.record import DraftOrder, Fracture, PatientRecord, within_months
from cds_service.rules.base import Action, Finding, Suggestion, rule
from cds_service.rules.diagnosis import OSTEOPENIA, OSTEOPOROSIS, assess
from cds_service.rules.settings import ClinicalSettings

CARD = "C-MASSAGE-SAFETY"
NOTE_MARK = "Osteoporosis massage precautions"  # first words of the note we add; seen again = already done
PATIENT_INSTRUCTION = "Report any new pain, change in mobility or injury to your therapist and your doctor promptly."

# Seed 002, in the words the therapist reads on the order.
AVOID = ("deep tissue massage, vigorous compression, joint mobilisation and manipulation, deep kneading, "
         "muscle stripping, friction, forceful stretching, and high pressure near osteoporotic regions "
         "(spine, ribs, hips, wrists)")
APPROPRIATE = ("gentle Swedish massage (light effleurage, mild kneading, vibration), myofascial release, "
               "reflexology, lymphatic drainage, craniosacral therapy; supported positioning "
               "(chair, bolsters, side-lying) to protect the spine and hips")
STRETCHING = "Passive stretching: careful, never forceful."
# Seed 002's technique guidance, for fragile bones (card detail).
TECHNIQUE = (
    "- **Avoid:** deep tissue massage, vigorous compression, joint mobilisation and manipulation near "
    "osteoporotic regions (spine, ribs, hips, wrists), deep kneading, muscle stripping, friction and high "
    "pressure. Never treat over or near a fracture from the last {weeks} weeks. Passive stretching: careful, "
    "never forceful.\n"
    "- **Appropriate:** gentle Swedish massage (light effleurage, mild kneading, vibration), myofascial release, "
    "reflexology, lymphatic drainage, craniosacral therapy.\n"
    "- **Positioning:** supported, for spinal and hip protection (chair, bolsters, side-lying).")
POSITIONING = ("Positioning: no unsupported prone lying; side-lying or seated with bolsters "
               "(kyphosis or vertebral fracture).")
SUSTAINED = "myofascial release, "  # sustained pressure: not with an anticoagulant (clinical review)


def _technique(weeks: int, positioning: bool, anticoagulant: bool) -> str:
    """TECHNIQUE for this patient: without the general positioning line when POSITIONING (the
    kyphosis / vertebral fracture one) is listed, and without myofascial release beside an
    anticoagulant's "no deep or sustained compression" (clinical review: both read twice or
    against each other)."""
    text = TECHNIQUE.format(weeks=weeks)
    if positioning:
        text = text[:text.index("\n- **Positioning:**")]
    return text.replace(SUSTAINED, "") if anticoagulant else text
FRAGILE_REGION_WORDS = ("spine", "spinal", "back", "lumbar", "thoracic", "cervical", "neck", "sacr", "hip",
                        "pelvi", "wrist", "rib", "vertebra")


def _weeks_ago(day: dt.date, today: dt.date) -> int:
    return (today - day).days // 7


def _fresh_fractures(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Fracture]:
    """Fractures with a known onset no more than fresh_fracture_weeks ago, or still healing then:
    a later-encounter code (ICD-10-CM 7th character D to R, Fracture.healing) recorded within
    the window, whatever the onset (undated: unknown, not fresh; a sequela code: healed)."""
    return [f for f in record.fractures if _fresh_day(f, today, settings)]


def _fresh_day(f: Fracture, today: dt.date, settings: ClinicalSettings) -> dt.date | None:
    """The onset when it is within fresh_fracture_weeks, else the day of a healing-phase code within it."""
    limit = settings.fresh_fracture_weeks * 7
    return next((d for d in (f.date, f.healing) if d is not None and 0 <= (today - d).days <= limit), None)


def _fresh_words(f: Fracture, today: dt.date, settings: ClinicalSettings) -> str:
    """'fresh hip fracture 3 weeks ago' (onset), or 'healing hip fracture, follow-up 3 weeks ago'."""
    day = _fresh_day(f, today, settings)
    site = "" if f.site == t.OTHER else f"{f.site} "
    if day == f.date:
        return f"fresh {site}fracture {_weeks_ago(day, today)} weeks ago"  # type: ignore[arg-type]
    return f"healing {site}fracture, follow-up {_weeks_ago(day, today)} weeks ago"  # type: ignore[arg-type]


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


class Site(NamedTuple):
    """A place not to treat: `line` for the detail and the order note; `name: short` for the summary."""
    line: str
    name: str
    short: str
    fact: str
    surgery: bool = False


def _site_cautions(record: PatientRecord, today: dt.date, settings: ClinicalSettings, verb: str) -> list[Site]:
    """The places not to treat (SEED: "do not treat over ... open wounds, active infections, or
    post-surgical sites unless cleared by a physician"; second-pass 6: bone metastases, no pressure
    over lesions). Each line says what this patient has and what to do (review 20: "Not here:
    bone metastases ..." read as "does not apply")."""
    out = []
    for group, label, has, todo, name, short in (
            ("skeletal_malignancy", "Bone metastases / skeletal malignancy", "Bone metastases or skeletal malignancy",
             "no pressure over or near the lesions", "bone metastases or malignancy",
             "bone metastases or skeletal malignancy: no pressure over or near the lesions"),
            ("open_wound", "Open wound", "Open wound", f"do not {verb} over or near it", "open wound",
             "open wound: not over or near it"),
            ("skin_infection", "Skin or soft-tissue infection", "Active skin or soft-tissue infection",
             f"do not {verb} over it", "skin infection", "skin or soft-tissue infection: not over it")):
        hits = record.condition_hits(group)
        if hits:
            h = hits[0]
            out.append(Site(f"{has} on record: {todo}.", name, short,
                            f"{label} ({h.code or 'coded'}) on {h.date or 'an unknown date'}"))
    weeks = settings.recent_surgery_weeks
    recent = [s for s in record.surgeries if s.date and 0 <= (today - s.date).days <= weeks * 7]
    if recent:
        s = recent[-1]
        ago = f"surgery {_weeks_ago(s.date, today)} weeks ago"  # type: ignore[arg-type]
        out.append(Site(f"{ago.capitalize()}: do not {verb} over the operated site until the surgeon clears it.",
                        ago, f"{ago}: not over the operated site until cleared by the surgeon",
                        f"Surgery: {s.name} on {s.date} ({s.ref})", surgery=True))
    return out


def _headline(sites: list[Site], condition: str | None, kind_word: str) -> str:
    """The summary's words at warning level: every trigger that set it (review 20: bone metastases
    beside osteoporosis named only the osteoporosis), the places not to treat first. When all do
    not fit the summary: the first in full and the others' names, else the names alone."""
    room = SUMMARY_MAX - len(f"{kind_word} order: ")
    fragile = [f"{condition}: gentle techniques only"] if condition else []
    names = [site.name for site in sites] + ([condition] if condition else [])
    for headline in ("; ".join([site.short for site in sites] + fragile),
                     f"{sites[0].short}; also {', '.join(names[1:])} (below)",
                     f"{', '.join(names)}: precautions below"):
        if len(headline) <= room:
            break
    return headline


def _near_fragile_region(draft: DraftOrder) -> bool:
    """Spinal manipulation or mobilisation near the spine, hips or wrists: spinal CPT
    codes always; otherwise the draft's bodySite, and no site named counts as near."""
    if t.is_spinal_manipulation(draft.resource.get("code")):
        return True
    sites = draft.resource.get("bodySite") or []
    text = " ".join(t.concept_text(s) for s in sites if isinstance(s, dict))
    return not text.strip() or any(w in text for w in FRAGILE_REGION_WORDS)


def _has_precautions(draft: DraftOrder) -> bool:
    notes = draft.resource.get("note") or []
    return any(isinstance(n, dict) and NOTE_MARK.lower() in str(n.get("text", "")).lower() for n in notes)


def _note(condition: str | None, fresh: list[Fracture], lines: list[str], today: dt.date, verb: str,
          settings: ClinicalSettings, anticoagulant: bool = False) -> str:
    who = f" (patient has {condition})" if condition else ""
    appropriate = APPROPRIATE.replace(SUSTAINED, "") if anticoagulant else APPROPRIATE
    parts = [f"{NOTE_MARK}{who}. Avoid: {AVOID}. Appropriate: {appropriate}. {STRETCHING}"]
    parts += lines
    for f in fresh:
        site = "" if f.site == t.OTHER else f"{f.site} "
        day = _fresh_day(f, today, settings)
        what = (f"FRESH {site.upper()}FRACTURE on {day}" if day == f.date else
                f"HEALING {site.upper()}FRACTURE (follow-up visit code on {day})")
        parts.append(f"{what} ({_weeks_ago(day, today)} weeks): "  # type: ignore[arg-type]
                     f"never {verb} over or near the fracture site; physician clearance required before treatment.")
    if not fresh:
        parts.append("Physician clearance needed after any recent fracture or surgery.")
    return " ".join(parts)


def _update(draft: DraftOrder, note: str, today: dt.date, word: str, fragile: bool) -> Suggestion:
    resource = copy.deepcopy(dict(draft.resource))
    resource["note"] = list(resource.get("note") or []) + [{"time": today.isoformat(), "text": note}]
    given = resource.get("patientInstruction")
    resource["patientInstruction"] = f"{given} {PATIENT_INSTRUCTION}" if isinstance(given, str) and given else \
        PATIENT_INSTRUCTION
    return Suggestion(f"Add the {'osteoporosis ' if fragile else ''}{word} precautions to this {word} order",
                      (Action("update", "The same order with the osteoporosis precautions in its note and a "
                                        "patient instruction to report new pain or injury", resource=resource),),
                      is_recommended=True)


@rule("order-select", "order-sign", cards=("C-MASSAGE-SAFETY",))
def massage_safety(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-MASSAGE-SAFETY (warning / critical), MASS-1 (brief 6; SEED 002; TFTF) as
    second-pass 6 widens it to every hands-on order: see the module docstring for
    what is critical and what is a warning."""
    drafts = [d for d in record.judged_drafts if d.kind in ("massage", "manual_therapy")]
    if not drafts:
        return []
    # the manual-therapy draft first (it can be critical), and one still lacking the note
    drafts.sort(key=lambda d: (d.kind != "manual_therapy", _has_precautions(d)))
    draft = drafts[0]
    manual = draft.kind == "manual_therapy"
    kind_word = "Manual therapy" if manual else "Massage"
    word, verb = kind_word.lower(), "treat" if manual else "massage"
    fresh = _fresh_fractures(record, today, settings)
    condition, facts = _bone_facts(record, settings)
    vertebral = [f for f in record.fractures if f.site == t.VERTEBRAL]
    osteoporosis = condition == OSTEOPOROSIS or bool(record.condition_hits("osteoporosis"))
    manipulation_risk = manual and (osteoporosis or bool(vertebral)) and _near_fragile_region(draft)
    sites = _site_cautions(record, today, settings, verb)
    if condition is None and not fresh and not sites and not manipulation_risk:
        return []  # normal or unknown bone status, nothing else: a missing value is not abnormal
    critical = bool(fresh) or manipulation_risk
    if not critical and all(_has_precautions(d) for d in drafts):
        return []
    modifiers = _modifiers(record, settings)
    positioning = bool(vertebral) or bool(record.condition_hits("kyphosis"))
    kyphosis = record.condition_hits("kyphosis")

    facts = [f"{kind_word} order: {draft.reference or draft.resource_type} (draft)"] + facts
    recent = [f for f in record.fractures if f not in fresh and within_months(f.date, today, settings.recent_fracture_months)]
    for f in fresh + recent:
        when = (f"within {settings.recent_fracture_months} months" if f not in fresh else
                f"{_weeks_ago(f.date, today)} weeks ago" if _fresh_day(f, today, settings) == f.date else  # type: ignore[arg-type]
                f"still healing: follow-up code {_weeks_ago(f.healing, today)} weeks ago")  # type: ignore[arg-type]
        _add_or_mark(facts, f.fact(), when)
    for f in vertebral:
        if f.fact() not in " ".join(facts):
            facts.append(f.fact())
    facts += [site.fact for site in sites] + [fact for _, fact in modifiers]
    if kyphosis:
        facts.append(f"Kyphosis ({kyphosis[0].code or 'coded'}) on {kyphosis[0].date or 'an unknown date'}")

    lines: list[str] = []
    if manipulation_risk:
        lines.append("NO spinal manipulation or joint mobilisation near the spine, hips or wrists "
                     "(osteoporosis / vertebral fracture).")
    lines += [site.line for site in sites]
    if positioning:
        lines.append(POSITIONING)
    lines += [f"Modify technique: {m}." for m, _ in modifiers]

    if fresh:
        headline = f"{_fresh_words(fresh[-1], today, settings)}: never {verb} over or near it; physician clearance first"
    elif manipulation_risk:
        headline = ("no spinal manipulation or joint mobilisation near the spine, hips or wrists "
                    f"({'vertebral fracture' if vertebral else 'osteoporosis'})")
    elif sites:
        headline = _headline(sites, condition, kind_word)
    else:
        headline = f"patient has {condition}: gentle techniques only, no deep pressure near spine, ribs, hips"
    surgery = any(site.surgery for site in sites)
    if fresh:
        what = ("Fresh fracture (" if any(_fresh_day(f, today, settings) == f.date for f in fresh) else
                "Fracture still healing (follow-up visit coded ")
        clearance = (f"**{what}within {settings.fresh_fracture_weeks} weeks): never {verb} over or near the "
                     "fracture site.** Physician clearance is required before the first session.")
    elif surgery:
        clearance = "**Surgeon's clearance** is needed before treatment near the operated site (listed below)."
    elif recent:
        clearance = "**Physician clearance** is needed after a recent fracture (listed below) before treatment near it."
    else:
        clearance = ("**Physician clearance** is needed after any recent fracture or surgery (none within "
                     f"{settings.recent_fracture_months} months / {settings.recent_surgery_weeks} weeks on record).")
    cautions = "\n".join(f"- **{line}**" for line in lines) if lines else \
        "- No anticoagulant, long-term corticosteroid or fragile-skin entry, wound, infection or recent surgery on record."

    extra: tuple[Suggestion, ...] = ()
    keys: tuple[str, ...] = ("cancel",) if critical and draft.reference else ()
    fragile = condition is not None or bool(fresh)
    if draft.id:
        update = _update(draft, _note(condition, fresh, lines, today, verb, settings, record.anticoagulant), today,
                         word, fragile)
        if manipulation_risk and draft.reference:
            # Manipulation itself is the danger: precautions on it would contradict the order.
            cancel = Suggestion(f"Remove this {word} order (spinal manipulation or joint mobilisation with fragile "
                                "bones)", (Action("delete", f"Delete the draft {word} order",
                                                  resource_id=(draft.reference,)),), True)
            # A spinal manipulation code is the manipulation itself: the same order with
            # "no manipulation" in its note contradicts itself, so only removal is offered.
            # Other manual therapy (97140) can be done without mobilising: kept as an option.
            spinal = t.is_spinal_manipulation(draft.resource.get("code"))
            keys, extra = (), (cancel,) if spinal else (cancel, dataclasses.replace(update, is_recommended=False))
        else:
            extra = (update,)
    return [Finding(
        CARD, facts=tuple(facts),
        variables={"headline": headline, "order_kind": kind_word, "order_word": word,
                   "intro": ("Fragile bones need a modified, gentle technique; tell the therapist." if fragile else
                             "Tell the therapist which sites to leave alone (below)."),
                   "technique": (_technique(settings.fresh_fracture_weeks, positioning, record.anticoagulant)
                                 if fragile else
                                 "- Passive stretching: careful, never forceful."),
                   "cleared": "the fracture is cleared" if fresh else "a physician clears it",
                   "condition": condition or ("a recent fracture" if fresh else "no osteoporosis on record"),
                   "clearance": clearance,
                   "modifiers": cautions, "fresh_fracture_weeks": str(settings.fresh_fracture_weeks)},
        indicator="critical" if critical else "warning",
        suggestions=keys,
        extra_suggestions=extra,
        delete_draft=draft.reference or None,
    )]


def _add_or_mark(facts: list[str], fact: str, when: str) -> None:
    """Mark a fact already listed (e.g. as a diagnosis reason) with `when`, else add it."""
    for i, existing in enumerate(facts):
        if fact in existing:
            facts[i] = f"{existing} ({when})"
            return
    facts.append(f"{fact} ({when})")
