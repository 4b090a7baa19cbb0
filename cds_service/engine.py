"""Run a hook's rules over a PatientRecord and return ordered card dicts.

Policy (DESIGN "quiet by default"): one card per card id (the most severe
finding wins), at most one drug-start card (C-TX-ANABOLIC > C-TX-DMAB-ALT >
C-TX-BP, brief TX-4: "do not also fire a separate TX-1 card") and none beside
a course card (denosumab due/overdue/stop, anabolic follow-on), cards ordered
critical, warning, info. No card offers an osteoporosis-drug order that a
critical order-time safety card would stop (withhold_vetoed_orders), and no test,
referral or drug order is offered on two cards of one screen (offer_each_order_once: the
more severe card keeps it). Then, when
a CardPolicy is given (the hook calls),
quieting by feedback and the info-card budget (cds_service.card_policy); only the
cards shown go through that order review and are rendered. Facts the rules share
are computed once per call (cds_service.rules.memo).
A rule that raises is logged by name and skipped, so
one broken rule never hides the others (strict=True re-raises, for tests).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from cds_service import card_policy, card_render, metrics
from cds_service.logs import error_fields
from cds_service.fhir import terminology as t
from cds_service.record import DraftOrder, PatientRecord, draft_order
from cds_service.record import _replace as record_replace
from cds_service.rules import exercise, memo
from cds_service.rules.base import INDICATORS, Finding, Suggestion, record_codes, rules_for, trigger_tokens
from cds_service.rules.catalogue import CATALOGUE
from cds_service.rules.settings import DEFAULT, ClinicalSettings

log = logging.getLogger(__name__)

DRUG_START_CARDS = ("C-TX-ANABOLIC", "C-TX-DMAB-ALT", "C-TX-BP")  # first wins
# Cards about a course already under way carry their own drug decision (the
# next denosumab dose, the follow-on after an anabolic): a "start therapy"
# card beside them would contradict them, so they silence the drug-start cards.
COURSE_CARDS = ("C-DMAB-DUE", "C-DMAB-OVERDUE", "C-DMAB-STOP", "C-ANABOLIC-FOLLOW-ON")
# A critical order-time card that is part of the plan, not a veto: C-SAFE-DMAB-CKD
# keeps a denosumab course under way with the PROLIA24 plan (second-pass 2: the plan
# "rides on" C-DMAB-DUE/OVERDUE), and offers "keep the order and add the plan" itself.
NOT_A_VETO = frozenset({"C-SAFE-DMAB-CKD"})
# The only suggested resources the order review can veto: record.draft_order reads drug
# classes from a MedicationRequest alone, so other orders (labs, DXA, referrals) are not filled for it.
DRUG_ORDER_TYPES = frozenset({"MedicationRequest"})
# The orders one screen offers once (offer_each_order_once): tests, referrals and drug orders
# (review 18, n07: C-SAFE-ROMO-CV and C-SAFE-ROMO-LIMIT each offered the follow-on denosumab;
# accepting both created two denosumab orders).
ONCE_PER_SCREEN_TYPES = frozenset({"ServiceRequest", "MedicationRequest"})
# Suggested orders repeat from call to call (the same templates) but each names its patient
# (`subject`, which record._draft never reads): their drafts are remembered across calls by
# the content without the subject, for plain JSON data only (see _draft_of).
_DRAFTS: dict[bytes, tuple[dict[str, Any], DraftOrder | None]] = {}
_DRAFTS_MAX = 512
# Dates, dataclasses and subclasses of str, int, dict or list are refused (TypeError), not written as JSON.
_PLAIN_JSON = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
               | orjson.OPT_PASSTHROUGH_SUBCLASS)


def run_rules(hook: str, record: PatientRecord, today: dt.date, settings: ClinicalSettings = DEFAULT,
              *, strict: bool = False) -> list[Finding]:
    """Every finding chosen (select), each after its order review, each test, referral or
    drug order offered once (offer_each_order_once)."""
    with memo.scope():
        return offer_each_order_once(withhold_vetoed_orders(_chosen(hook, record, today, settings, strict), record,
                                                            today, settings, strict=strict),
                                     patient_id=record.patient_id, today=today)


def _chosen(hook: str, record: PatientRecord, today: dt.date, settings: ClinicalSettings,
            strict: bool) -> list[Finding]:
    findings: list[Finding] = []
    for rule in rules_for(hook):
        try:
            findings.extend(rule(record, today, settings))
        except Exception as exc:
            if strict:
                raise
            # Type and place only: the exception's text may quote patient data.
            log.error("rule %s failed (hook %s); skipped", getattr(rule, "__name__", rule), hook,
                      extra=error_fields(exc))
    return select(findings)


def _vetoes(resource: dict[str, Any], record: PatientRecord, today: dt.date, settings: ClinicalSettings,
            strict: bool) -> tuple[DraftOrder | None, list[Finding]]:
    """The resource as a draft order, and the critical order-sign findings it would meet
    if it were signed on its own today (none unless it is an osteoporosis-drug order).
    Judged once per call for the same order (several cards may suggest it)."""
    try:
        content = orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not plain JSON data (a resource built in code): judged every time
        return _judged(resource, record, today, settings, strict)
    return memo.remembered(("vetoes", content, today, settings, strict), record,
                           lambda: _judged(resource, record, today, settings, strict))


def _judged(resource: dict[str, Any], record: PatientRecord, today: dt.date, settings: ClinicalSettings,
            strict: bool) -> tuple[DraftOrder | None, list[Finding]]:
    draft = _draft_of(resource)
    if draft is None or not (draft.drug_classes & t.OSTEOPOROSIS_DRUG_CLASSES):
        return draft, []
    # record_replace: dataclasses.replace re-runs __init__ over the record's ~30 fields (about 6 us more).
    trial = record_replace(record, drafts=(draft,))
    memo.same_chart(trial, record)  # the facts of the chart hold for the trial: no draft in them
    found = []
    for rule in _review_rules():
        try:
            for f in rule(trial, today, settings):  # most return none: no comprehension to set up
                if _indicator(f) == "critical" and f.card_id not in NOT_A_VETO:
                    found.append(f)
        except Exception as exc:
            if strict:
                raise
            log.error("rule %s failed judging a suggested order; skipped", getattr(rule, "__name__", rule),
                      extra=error_fields(exc))
    return draft, found


# (the order-sign rules as rules_for gave them, those of them the review runs)
_REVIEW_RULES: tuple[list[Any], list[Any]] = ([], [])


def _review_rules() -> list[Any]:
    """The order-sign rules that can return a veto, in their order: a rule that declares
    its cards (rules.base.rule) and none of them can be critical (CATALOGUE's indicators
    and the card's own) or all are NOT_A_VETO never adds to _judged's findings, so the
    review leaves it out. Chosen again only when the order-sign rules change."""
    global _REVIEW_RULES
    rules = rules_for("order-sign")
    if rules != _REVIEW_RULES[0]:
        _REVIEW_RULES = (rules, [rule for rule in rules if _may_veto(getattr(rule, "cards", None))])
    return _REVIEW_RULES[1]


def _may_veto(cards: tuple[str, ...] | None) -> bool:
    if cards is None:
        return True
    for card_id in cards:
        if card_id in NOT_A_VETO:
            continue
        if card_id not in CATALOGUE or "critical" in CATALOGUE[card_id][1] or (
                card_render.load_card(card_id).get("indicator") == "critical"):
            return True
    return False


def _draft_of(resource: Any) -> DraftOrder | None:
    """draft_order(resource), remembered across calls. The draft is read once from the
    content as plain JSON (orjson's own objects); a resource equal (==) to that, subject
    aside, is plain JSON data of the same value, so its draft is the same: only the
    resource it holds is this one. Anything else (a tuple, a UUID) is read as it is."""
    if type(resource) is not dict:
        return draft_order(resource)
    unnamed = dict(resource)
    unnamed.pop("subject", None)
    try:
        content = orjson.dumps(unnamed, option=_PLAIN_JSON)
    except TypeError:
        return draft_order(resource)
    known = _DRAFTS.get(content)
    if known is None:
        plain = orjson.loads(content)
        known = (plain, draft_order(plain))
        if len(_DRAFTS) >= _DRAFTS_MAX:
            _DRAFTS.clear()
        _DRAFTS[content] = known
    plain, draft = known
    if draft is None or unnamed != plain:
        return draft_order(resource)
    return record_replace(draft, resource=resource)


def _veto_fact(drugs: list[str], veto: Finding, record: PatientRecord, today: dt.date) -> str:
    card = card_render.render(veto, patient_id=record.patient_id, today=today)
    why = "; ".join(f for f in veto.facts if not f.startswith("Draft order"))
    named = drugs[0] if len(drugs) == 1 else f"{', '.join(drugs[:-1])} or {drugs[-1]}"
    return (f"No {named} order offered here: {card['summary'] if card else veto.card_id}"
            + (f" ({why})" if why else ""))


def withhold_vetoed_orders(findings: list[Finding], record: PatientRecord, today: dt.date,
                           settings: ClinicalSettings, *, strict: bool = False) -> list[Finding]:
    """Clinical review of the second pass: cards must not contradict each other. A
    suggestion that would create an osteoporosis-drug order meeting a critical
    order-time card (C-SAFE-PREGNANCY, C-SAFE-HYPOCA, C-SAFE-RENAL for zoledronic acid,
    C-SAFE-ROMO-CV; labels: Prolia, Fosamax, Reclast, Evenity) is dropped, and the
    card's facts say why: e.g. a drug-start or denosumab-due card beside a pregnancy or
    a low calcium. Judged by the order-sign rules themselves, so the two can never
    disagree; the card still fires with its advice."""
    with memo.scope():
        return [_reviewed(finding, record, today, settings, strict) for finding in findings]


def _reviewed(finding: Finding, record: PatientRecord, today: dt.date, settings: ClinicalSettings,
              strict: bool) -> Finding:
    """One finding after the order review (withhold_vetoed_orders). It only ever adds facts
    and drops suggestions: card_policy relies on that."""
    drop_keys: set[str] = set()
    drop_extra: set[int] = set()
    vetoed: dict[str, tuple[Finding, list[str]]] = {}  # veto card id -> (its finding, drugs it stops)
    for (kind, ident), resources, renders in card_render.suggestion_orders(
            finding, patient_id=record.patient_id, today=today, resource_types=DRUG_ORDER_TYPES):
        for resource in resources:  # drug orders only: a lab or referral has no drug to veto (_judged)
            draft, vetoes = _vetoes(resource, record, today, settings, strict)
            if vetoes:
                if not renders():
                    break  # a suggestion render() drops: not offered, so nothing to withhold
                (drop_keys if kind == "key" else drop_extra).add(ident)
                drug = draft.agents[0].replace("_", " ") if draft and draft.agents else "drug"
                drugs = vetoed.setdefault(vetoes[0].card_id, (vetoes[0], []))[1]
                if drug not in drugs:
                    drugs.append(drug)
                break
    notes = [_veto_fact(drugs, veto, record, today) for veto, drugs in vetoed.values()]
    if not notes:
        return finding
    keys = finding.suggestions if finding.suggestions is not None else tuple(
        s.get("key") for s in card_render.load_card(finding.card_id).get("suggestions") or ())
    return dataclasses.replace(
        finding, facts=tuple(dict.fromkeys(finding.facts + tuple(notes))),
        suggestions=tuple(k for k in keys if k not in drop_keys),
        extra_suggestions=tuple(s for i, s in enumerate(finding.extra_suggestions) if i not in drop_extra))


def _code(resource: dict[str, Any]) -> dict[str, Any]:
    """What is ordered: a test's or referral's code, a drug order's medication."""
    field = "medicationCodeableConcept" if resource.get("resourceType") == "MedicationRequest" else "code"
    code = resource.get(field)
    return code if isinstance(code, dict) else {}


def _order_key(resource: dict[str, Any]) -> tuple[Any, ...]:
    """One test, referral or drug order, whatever card words it: its type, codes (else text) and
    schedule (a calcium once before the dose and the PROLIA24 weekly calcium after it are two
    orders; a drug is one order whatever its instructions)."""
    code = _code(resource)
    codings = tuple(sorted((str(c.get("system")), str(c.get("code"))) for c in code.get("coding") or ()
                           if isinstance(c, dict)))
    timing = resource.get("occurrenceTiming")  # a ServiceRequest's (a MedicationRequest has none)
    return (resource.get("resourceType"), codings or str(code.get("text")),
            orjson.dumps(timing, option=orjson.OPT_SORT_KEYS) if timing else b"")


def _order_name(resource: dict[str, Any]) -> str:
    code = _code(resource)
    return str(code.get("text") or next((c.get("display") for c in code.get("coding") or () if isinstance(c, dict)
                                          and c.get("display")), "an order"))


def offer_each_order_once(findings: list[Finding], *, patient_id: str | None, today: dt.date) -> list[Finding]:
    """Clinical review 15: two cards on one screen offered the same CKD-MBD labs and referral
    (C-SAFE-RENAL's anabolic-ckd beside C-SAFE-ROMO-CV, C-SAFE-ANABOLIC-CONTRA, C-SAFE-ROMO-LIMIT
    or C-SAFE-PTH-LIMIT in CKD 4-5; PROLIA24, KDIGO 2017): one click on each ordered each test
    twice. A test or referral (ONCE_PER_SCREEN_TYPES) is offered by the most severe card that
    suggests it (the earlier card among equals, as the cards are listed); a later card's
    suggestion loses it, and one left creating nothing is dropped (its orders, a draft's removal
    with them, are on the other card). A drug order (review 18) is the point of its suggestion:
    one that repeats a drug order is dropped whole (its tests come with the drug on the other
    card). A stop (an update to stopped) orders nothing and is never dropped. The card says what
    it leaves to which card (by its summary). Like the order review it only adds facts and drops
    suggestions."""
    if sum(1 for f in findings if f.extra_suggestions or f.suggestions != ()) < 2:
        return findings  # one card with suggestions (most calls): nothing can repeat
    offered: dict[tuple[Any, ...], Finding] = {}  # order -> the finding whose card offers it
    out = list(findings)
    for i in sorted(range(len(findings)), key=lambda i: (_severity(findings[i]), i)):
        out[i] = _once(findings[i], offered, patient_id, today)
    return out


def _once(finding: Finding, offered: dict[tuple[Any, ...], Finding], patient_id: str | None,
          today: dt.date) -> Finding:
    drop_keys: set[str] = set()
    extras = list(finding.extra_suggestions)
    left: dict[int, tuple[Finding, list[str]]] = {}  # id(finding offering them) -> (it, orders left to it)
    mine: dict[tuple[Any, ...], Finding] = {}
    for (kind, ident), resources, renders in card_render.suggestion_orders(
            finding, patient_id=patient_id, today=today, resource_types=ONCE_PER_SCREEN_TYPES):
        if not resources or not renders():
            continue
        keyed = [(r, _order_key(r)) for r in resources]
        repeated = [r for r, key in keyed if key in offered]
        drug = any(r.get("resourceType") == "MedicationRequest" for r in repeated)
        if kind == "extra":
            s = extras[ident]
            keep = () if drug else tuple(
                a for a in s.actions if not (a.type in ("create", "update") and a.resource
                                             and a.resource.get("resourceType") in ONCE_PER_SCREEN_TYPES
                                             and a.resource.get("status") != "stopped"
                                             and _order_key(dict(a.resource)) in offered))
            if any(a.type in ("create", "update") for a in keep):
                extras[ident] = Suggestion(s.label, keep, s.is_recommended) if repeated else s
            else:
                extras[ident] = None  # type: ignore[call-overload]
        elif repeated:
            # A YAML suggestion is the card's own set (no action is taken out of it): dropped when
            # it orders nothing new, else kept whole (none on the order hooks does so today).
            creates = next(res for (k, key), res, _ in card_render.suggestion_orders(
                finding, patient_id=patient_id, today=today) if k == "key" and key == ident)
            if len(creates) == len(repeated) or drug:
                drop_keys.add(ident)
            else:
                repeated = []  # kept whole: nothing left to the other card
        for r in repeated:
            other = offered[_order_key(r)]
            names = left.setdefault(id(other), (other, []))[1]
            if _order_name(r) not in names:
                names.append(_order_name(r))
        kept = kind == "extra" and extras[ident] is not None or kind == "key" and ident not in drop_keys
        if kept:
            mine.update({key: finding for _, key in keyed if key not in offered})
    offered.update(mine)
    if not left:
        return finding
    notes = tuple(_left_fact(other, names, patient_id, today) for other, names in left.values())
    keys = finding.suggestions if finding.suggestions is not None else tuple(
        s.get("key") for s in card_render.load_card(finding.card_id).get("suggestions") or ())
    return dataclasses.replace(finding, facts=tuple(dict.fromkeys(finding.facts + notes)),
                               suggestions=tuple(k for k in keys if k not in drop_keys),
                               extra_suggestions=tuple(s for s in extras if s is not None))


def _left_fact(other: Finding, names: list[str], patient_id: str | None, today: dt.date) -> str:
    card = card_render.render(other, patient_id=patient_id, today=today)
    return (f"Not repeated here: {', '.join(names)}, offered on the card "
            f"\"{card['summary'] if card else other.card_id}\"")


def _severity(finding: Finding) -> int:
    return INDICATORS.index(_indicator(finding))


def select(findings: list[Finding]) -> list[Finding]:
    """Dedupe card ids, keep one drug-start card, order by severity."""
    best: dict[str, Finding] = {}
    for f in findings:
        if f.card_id not in best or _severity(f) < _severity(best[f.card_id]):
            best[f.card_id] = f
    starts = [c for c in DRUG_START_CARDS if c in best]
    keep = 0 if any(c in best for c in COURSE_CARDS) else 1
    for loser in starts[keep:]:
        del best[loser]
    order = {cid: i for i, cid in enumerate(dict.fromkeys(f.card_id for f in findings))}
    return sorted(best.values(), key=lambda f: (_severity(f), order[f.card_id]))


def _indicator(finding: Finding) -> str:
    return finding.indicator or card_render.load_card(finding.card_id)["indicator"]


@dataclasses.dataclass(frozen=True)
class Outcome:
    cards: list[dict[str, Any]]             # dicts without uuids
    held: list[card_policy.Held] = dataclasses.field(default_factory=list)  # chosen but not shown
    skipped: int = 0                        # resources of the chart that could not be read
    # card id -> the trigger tokens of the card as shown (rules.base.trigger_tokens), for the store
    # to keep as keyed hashes with the issued card (card_policy: a new trigger by content). In memory only.
    triggers: Mapping[str, frozenset[str]] = dataclasses.field(default_factory=dict)


def decide(hook: str, record: PatientRecord, today: dt.date, settings: ClinicalSettings = DEFAULT,
           *, patient_id: str | None = None, policy: card_policy.CardPolicy | None = None,
           strict: bool = False) -> Outcome:
    """Cards for one hook call, and what the policy held back."""
    if record.deceased and hook == "patient-view":
        # Screening, drug starts and reminders for someone who has died are noise at best. An
        # order being signed says the patient is alive (or the record is wrong): its safety
        # cards still speak (adversarial review 13: a deceased copy silenced a critical one).
        log.debug("hook %s: 0 cards (patient deceased)", hook)
        metrics.CARDS_WITHHELD.labels("deceased").inc()
        return Outcome([], skipped=record.skipped_count)
    with memo.scope():
        return _decide(hook, record, today, settings, patient_id=patient_id, policy=policy, strict=strict)


def _decide(hook: str, record: PatientRecord, today: dt.date, settings: ClinicalSettings, *,
            patient_id: str | None, policy: card_policy.CardPolicy | None, strict: bool) -> Outcome:
    pid = patient_id or record.patient_id
    chosen = _chosen(hook, record, today, settings, strict)
    # The order review (and the rendering) only for the cards that will be shown: one
    # that quieting or the budget holds back never pays for it. Quieting asks for the
    # review of a card it would hold back (the review may add a newer date to its facts).
    reviewed: dict[int, tuple[Finding, Finding]] = {}  # id(finding) -> (the finding, after review)

    def review(finding: Finding) -> Finding:
        if id(finding) not in reviewed:
            reviewed[id(finding)] = (finding, _reviewed(finding, record, today, settings, strict))
        return reviewed[id(finding)][1]

    codes: list[frozenset[str]] = []  # the record's codes, read once, when first needed

    def tokens(finding: Finding) -> frozenset[str]:
        if not codes:
            codes.append(record_codes(record))
        return trigger_tokens(finding, codes[0])

    held: list[card_policy.Held] = []
    if policy is not None:
        chosen, held = card_policy.apply(chosen, today, policy, _indicator, review, tokens)
    # Worded for the cards shown beside it: C-FALLS names C-EXERCISE only when it is on the screen.
    findings = offer_each_order_once(exercise.beside_exercise_card([review(f) for f in chosen]),
                                     patient_id=pid, today=today)
    # A card names another card only when that one is on this screen (rules.base.CROSS_REF).
    shown = frozenset(f.card_id for f in findings)
    cards = []
    triggers: dict[str, frozenset[str]] = {}
    for finding in findings:
        card = card_render.render(finding, patient_id=pid, today=today, strict=strict, shown=shown)
        if card is not None:
            cards.append(card)
            triggers[finding.card_id] = tokens(finding)
    # The request's own log line carries the counts (cds_service.app): one line per call.
    if log.isEnabledFor(logging.DEBUG):
        log.debug("hook %s: %d cards (%s), %d held back; %d resources skipped", hook, len(cards),
                  ",".join(c["source"]["topic"]["code"] for c in cards), len(held), record.skipped_count)
    return Outcome(cards, held, record.skipped_count, triggers)


def evaluate(hook: str, record: PatientRecord, today: dt.date, settings: ClinicalSettings = DEFAULT,
             *, patient_id: str | None = None, strict: bool = False) -> list[dict[str, Any]]:
    """Every card the rules choose (no quieting, no budget): for rule tests and tools."""
    return decide(hook, record, today, settings, patient_id=patient_id, strict=strict).cards
