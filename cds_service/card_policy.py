"""Which of the cards the rules chose are shown: quieting by feedback and the
info-card budget (second-pass section 7, "Quiet by default").

Pure: the web layer looks up the quiet marks (one query per patient-view)
and passes them in with the budget; the engine calls `apply` after its own
selection.

- Quieted: a card id accepted or overridden for this patient within its
  quiet period (store.quiet_marks) is held back, unless it is critical now,
  is more severe now than when it was acted on, or has a new trigger: data
  newer than the day the card acted on was issued (rules.base.trigger_date),
  or, dated or not, coded data the card acted on did not rest on: a token of
  rules.base.trigger_tokens (a diagnosis back-entered with an old onset, or
  none; a worse kidney band) whose keyed hash (CardPolicy.key_of) is not among
  those stored with the card (QuietMark.keys). Feedback stored before the
  keys were (QuietMark.keys None): the date alone, as before.
- Budget: of the info cards left, at most `info_budget`, highest value first
  (rules.catalogue.VALUE_TIERS); warning and critical cards always pass.
- Routine cards (calcium and vitamin D, exercise, falls, lifestyle) take
  turns: at most `routine_budget` per chart open, none while a drug decision
  or a test card is shown (BATES03: one thing at a time), and which one goes
  first rotates by day. A held routine card comes back at a later chart open,
  since nothing was done. A routine budget at or above the info budget turns
  this off. A finding a rule placed in a higher tier (Finding.tier: the falls
  card after a recent fall or fracture) is not routine this time: it ranks,
  and is budgeted, with that tier.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping

from cds_service.rules.base import INDICATORS, Finding, trigger_date
from cds_service.rules.catalogue import is_routine, value_rank
from cds_service.store import QuietMark

QUIETED, OVER_BUDGET = "quieted", "over_budget"


@dataclasses.dataclass(frozen=True)
class CardPolicy:
    quiet: Mapping[str, QuietMark] = dataclasses.field(default_factory=dict)
    info_budget: int | None = None  # None: no budget (order hooks, tests of the rules)
    routine_budget: int | None = None  # routine-tier cards per chart open; None: no separate limit
    # A trigger token as the store keeps it (the web layer: patient_key.trigger_key with the server
    # secret and this patient's key); None: the token itself (tests, tools).
    key_of: Callable[[str], str] | None = None

    def keys(self, tokens: Iterable[str]) -> frozenset[str]:
        return frozenset(tokens) if self.key_of is None else frozenset(map(self.key_of, tokens))


@dataclasses.dataclass(frozen=True)
class Held:
    """A card the rules chose but the policy did not show (ids only)."""

    card_id: str
    reason: str  # QUIETED or OVER_BUDGET


def is_quieted(finding: Finding, indicator: str, mark: QuietMark | None, today: dt.date,
               keys: Callable[[Finding], frozenset[str]] | None = None) -> bool:
    """`keys(finding)`: the keyed trigger tokens it rests on now (compared with mark.keys when
    the mark has them)."""
    if mark is None or indicator == "critical":
        return False
    if INDICATORS.index(indicator) < INDICATORS.index(mark.indicator):
        return False  # more severe than what the clinician saw
    if mark.keys is not None and keys is not None and not keys(finding) <= mark.keys:
        return False  # rests on coded data the card acted on did not: a new trigger, whatever its date
    trigger = trigger_date(finding, today)
    return trigger is None or trigger <= mark.issued_on


def _routine(f: Finding) -> bool:
    return is_routine(f.card_id, f.tier)


def _routine_turns(info: list[Finding], today: dt.date) -> list[Finding]:
    """Routine cards take turns by day: the one first in line changes from one
    day to the next, so a card nobody acts on never keeps the others off the
    screen for good (a card acted on is quieted and leaves the line)."""
    routine = [f for f in info if _routine(f)]
    if len(routine) < 2:
        return info
    turn = today.toordinal() % len(routine)
    rotated = iter(routine[turn:] + routine[:turn])
    return [next(rotated) if _routine(f) else f for f in info]


def apply(findings: list[Finding], today: dt.date, policy: CardPolicy,
          indicator_of: Callable[[Finding], str],
          reviewed: Callable[[Finding], Finding] | None = None,
          tokens: Callable[[Finding], frozenset[str]] | None = None) -> tuple[list[Finding], list[Held]]:
    """(findings shown, in order, and those held back). `findings` come
    ordered by severity; info cards are reordered by value.

    `reviewed(f)`: f as it will be shown, when `findings` are not yet through the
    engine's order review. The review only adds facts (and drops suggestions), so it can
    give a card a newer trigger but never an older one, and it changes nothing else
    this policy reads (card id, indicator, tier): a card shown as it is stays shown, a
    card held back as it is is held back only if it is held back as it will be shown.

    `tokens(f)`: the trigger tokens f rests on (rules.base.trigger_tokens; the engine
    reads them with the record); None: the date alone."""
    keys = (lambda f: policy.keys(tokens(f))) if tokens is not None else None
    held: list[Held] = []
    shown: list[Finding] = []
    for f in findings:
        mark = policy.quiet.get(f.card_id)
        if is_quieted(f, indicator_of(f), mark, today, keys) and (
                reviewed is None or is_quieted(reviewed(f), indicator_of(f), mark, today, keys)):
            held.append(Held(f.card_id, QUIETED))
        else:
            shown.append(f)
    info = sorted((f for f in shown if indicator_of(f) == "info"), key=lambda f: value_rank(f.card_id, f.tier))
    if policy.info_budget is None:
        return [f for f in shown if indicator_of(f) != "info"] + info, held
    keep: list[Finding] = []
    # A routine budget at or above the info budget lets routine cards compete on value alone.
    routine_left = policy.routine_budget if (policy.routine_budget or 0) < policy.info_budget else None
    if routine_left is not None:
        info = _routine_turns(info, today)
    for f in info:
        routine = _routine(f)
        if routine and routine_left is not None:
            if routine_left <= 0 or any(not _routine(k) for k in keep):
                held.append(Held(f.card_id, OVER_BUDGET))
                continue
            routine_left -= 1
        if len(keep) < policy.info_budget:
            keep.append(f)
        else:
            held.append(Held(f.card_id, OVER_BUDGET))
    return [f for f in shown if indicator_of(f) != "info"] + keep, held
