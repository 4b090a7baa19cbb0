"""Order-time checks other than drug safety (order-select: the selected
drafts, record.judged_drafts; order-sign: every draft).

Rules:
- `dxa_duplicate`: C-MON-DXA-DUP (warning), brief MON-2: a DXA is ordered
  less than settings.dxa_duplicate_months (12) after the previous DXA
  (record.latest_dxa_date, from DXA Observations and Procedures). Seed 000:
  "every 2 years ... generally not more than annually". Suggestion: delete the
  draft. Override reasons: new fracture, high-dose glucocorticoid start,
  pre/post-anabolic baseline.
- `calcium_vitamin_d_on_order`: C-SUPP-CAVD (info) on the order hooks (README
  addition to TX-7): a bone-modifying drug is ordered for a patient without
  active calcium and vitamin D. Wraps
  supplementation.calcium_vitamin_d_with_order; calcium or vitamin D drafted
  in the same ordering session counts as on hand, so the card does not
  suggest what is already being ordered.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from cds_service.fhir import terminology as t
from cds_service.record import (
    AgentExposure,
    DraftOrder,
    PatientRecord,
    add_months,
    months_between,
    parse_date,
)
from cds_service.rules import supplementation
from cds_service.rules.base import Finding, rule, with_facts
from cds_service.rules.settings import ClinicalSettings

# ---------------------------------------------------------------------------
# MON-2: duplicate DXA
# ---------------------------------------------------------------------------

def _planned_date(draft: DraftOrder, today: dt.date) -> dt.date:
    """When the scan is planned: occurrence[x] of the draft if later than
    today (a DXA ordered now for next year is not a duplicate), else today."""
    res = draft.resource
    period = res.get("occurrencePeriod") if isinstance(res.get("occurrencePeriod"), dict) else {}
    timing = res.get("occurrenceTiming") if isinstance(res.get("occurrenceTiming"), dict) else {}
    when = parse_date(res.get("occurrenceDateTime")) or parse_date(period.get("start")) or next(
        (d for d in (parse_date(e) for e in timing.get("event") or ()) if d), None)
    return when if when and when > today else today


@rule("order-select", "order-sign", cards=("C-MON-DXA-DUP",))
def dxa_duplicate(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-MON-DXA-DUP (warning), MON-2 (brief 5; SEED 000 "not more often than
    annually"): a DXA draft planned < dxa_duplicate_months after the previous
    DXA. No DXA on file: quiet (nothing to duplicate)."""
    drafts = [d for d in record.judged_drafts if d.kind == "dxa"]
    previous = record.latest_dxa_date
    if not drafts or previous is None or previous > today:
        return []
    draft = drafts[0]
    planned = _planned_date(draft, today)
    # Calendar months: a scan on the same day a year later is "annually", not a duplicate.
    if planned >= add_months(previous, settings.dxa_duplicate_months):
        return []
    months = months_between(previous, planned)
    scores = [b.fact() for b in record.latest_t_scores().values() if b.date == previous]
    facts = [f"DXA order: {draft.reference or draft.resource_type} (draft), planned for {planned}",
             f"Previous DXA on {previous} ({months:.1f} months before the planned scan)"]
    facts += [f"Previous DXA result: {s}" for s in scores]
    # Facts that may justify an early scan (the override reasons): say so, the clinician decides.
    facts += [f"{f.fact()}, after the previous DXA (an early repeat may be justified)"
              for f in record.fractures if f.date and f.date > previous]
    return [Finding(
        "C-MON-DXA-DUP", facts=tuple(facts),
        variables={"previous_dxa": previous.isoformat(), "months_since": str(int(months)),
                   "duplicate_months": str(settings.dxa_duplicate_months)},
        suggestions=("remove-draft",) if draft.reference else (),
        delete_draft=draft.reference or None,
    )]


# ---------------------------------------------------------------------------
# TX-7 on the order hooks: calcium and vitamin D beside a new bone drug
# ---------------------------------------------------------------------------

def _with_drafted_supplements(record: PatientRecord) -> PatientRecord:
    """The record with calcium / vitamin D drafts (any draft, selected or not:
    they are being ordered now) counted as active supplements."""
    drafted = {a for d in record.drafts for a in d.agents if t.AGENTS[a].drug_class in t.SUPPLEMENT_CLASSES}
    missing = [a for a in drafted if not (record.medications.get(a) and record.medications[a].active)]
    if not missing:
        return record
    meds = dict(record.medications)
    for agent in missing:
        meds[agent] = AgentExposure(agent=agent, drug_class=t.AGENTS[agent].drug_class, active=True,
                                    status="draft", start=record.today, last_dose=None, stopped=None,
                                    dose_count=0, exposure_days=0, oncology_only=False, events=())
    return dataclasses.replace(record, medications=meds)


@rule("order-select", "order-sign", cards=("C-SUPP-CAVD",))
def calcium_vitamin_d_on_order(record: PatientRecord, today: dt.date, settings: ClinicalSettings) -> list[Finding]:
    """C-SUPP-CAVD (info) on order-select/order-sign (TX-7, SEED "all treated
    patients get calcium + vitamin D"; BHOF22): a bone drug is being ordered
    and calcium and vitamin D are neither active nor being ordered with it."""
    adjusted = _with_drafted_supplements(record)
    findings = supplementation.calcium_vitamin_d_with_order(adjusted, today, settings)
    drafted = {a for a, e in adjusted.medications.items() if e.status == "draft"}
    ordered = [d.reference for d in record.judged_drafts if d.drug_classes & t.OSTEOPOROSIS_DRUG_CLASSES and d.reference]
    out = []
    for f in findings:
        facts = [_drafted_fact(x, drafted) for x in f.facts]
        facts.insert(1, f"Draft order {', '.join(ordered) or '(no id)'} on {today}")
        out.append(with_facts(f, tuple(facts)))
    return out


def _drafted_fact(fact: str, drafted: set[str]) -> str:
    """Say "being ordered" rather than "on file" for a supplement that is only drafted."""
    for agent, word in (("calcium", "calcium"), ("vitamin_d", "vitamin D")):
        if agent in drafted and fact == f"Active {word} supplement on file":
            return f"{word[0].upper()}{word[1:]} supplement being ordered in the same session"
    return fact
