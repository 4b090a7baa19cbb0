"""What a rule returns (Finding) and how rules are registered per hook.

A rule is a pure function `(record, today, settings) -> list[Finding]`: no
Flask, no HTTP, no JSON output. It decides *whether* a card fires and with
which patient facts; the wording and the order templates live in
cards/<card id>.yaml and cds_service.card_render turns a Finding into a card.

    @rule("patient-view")
    def calcium_vitamin_d(record, today, settings):
        ...
        return [Finding("C-SUPP-CAVD", facts=(...), variables={...}, suggestions=("both",))]
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from cds_service.record import PatientRecord, _quick_init
from cds_service.rules.settings import ClinicalSettings

HOOKS = ("patient-view", "order-select", "order-sign")
INDICATORS = ("critical", "warning", "info")  # most severe first


@_quick_init
@dataclasses.dataclass(frozen=True)
class Action:
    """A suggestion action built in code (most come from the card YAML)."""

    type: str                                  # create / update / delete
    description: str
    resource: Mapping[str, Any] | None = None  # create/update: a FHIR resource (subject etc. filled in)
    resource_id: tuple[str, ...] = ()          # delete: relative references, e.g. ("MedicationRequest/1",); one action each


@_quick_init
@dataclasses.dataclass(frozen=True)
class Suggestion:
    label: str
    actions: tuple[Action, ...]
    is_recommended: bool = False


@_quick_init
@dataclasses.dataclass(frozen=True)
class Finding:
    card_id: str                                  # catalogue id; picks cards/<card_id>.yaml
    facts: tuple[str, ...] = ()                   # patient data used, with dates ("Lumbar spine T-score -2.7 on 2025-02-01")
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)  # {{name}} values for summary/detail/resources
    indicator: str | None = None                  # override the YAML indicator (e.g. C-VITD-LOW info vs warning)
    suggestions: tuple[str, ...] | None = None    # YAML suggestion keys to offer, in order; None = all of them
    extra_suggestions: tuple[Suggestion, ...] = ()  # suggestions built in code, after the YAML ones
    delete_draft: str | None = None               # relative reference filled into YAML `delete` actions
    source_url: str | None = None                 # overrides the YAML source.url (e.g. the drug's own DailyMed label)
    # "New trigger" for quieting: the date of the newest data that made the card
    # fire (a new fracture, diagnosis, lab across a threshold). None: the newest
    # date before today in `facts` (see trigger_date). Give it when the facts
    # carry dates that are not new data, or leave out data that should not wake
    # a quieted card. NO_TRIGGER: nothing on record can wake it (only the end of
    # the quiet period).
    trigger: dt.date | None = None
    # "New trigger" by content (second-pass 7, review 21): the coded data the card rests on, as
    # tokens; a quieted card comes back when it now holds a token the card acted on did not, dated
    # or not (a diagnosis back-entered with an old onset, or none). None: the Condition and fracture
    # codes its facts quote (trigger_tokens). Give it when the facts quote codes that are no new
    # reason (rules that give `trigger` choose their data), or to add a state the codes do not
    # carry (the kidney band, rules.facts.kidney_band_tokens); () wakes on no code.
    trigger_codes: tuple[str, ...] | None = None
    # Order of value for the info budget (rules.catalogue.VALUE_TIERS): a tier name when this
    # finding is worth more than its card id usually is (e.g. a falls card right after a fall
    # or fracture); None: the card id's tier.
    tier: str | None = None
    # YAML resource names whose actions are left out of the YAML suggestions (e.g. a test on
    # record recently); a suggestion so shortened takes its `partialLabel`, one left empty is dropped.
    left_out: tuple[str, ...] = ()
    # A `variants` entry of the card YAML whose summary and detail replace the card's own (the
    # same card id, indicator and suggestions; e.g. a drug-start card that refers instead).
    variant: str | None = None

    def __post_init__(self) -> None:
        if self.indicator is not None and self.indicator not in INDICATORS:
            raise ValueError(f"bad indicator {self.indicator!r}")


def with_facts(finding: Finding, facts: tuple[str, ...]) -> Finding:
    """dataclasses.replace(finding, facts=facts) without re-running __init__ and
    __post_init__ over every field (the indicator, all they check, is unchanged): about
    2.5 us less, and the order review runs such rules for every suggested drug order."""
    new = object.__new__(type(finding))
    new.__dict__.update(finding.__dict__, facts=facts)
    return new


# A card's words that name another card ("see the vitamin D card"), review 16: the named card may
# not be on the screen (it did not fire, feedback quieted it, the routine budget held it back, or
# it belongs to another hook), and a pointer to a card that is not shown points to nothing. So a
# rule or a card template writes such words as a cross-reference, [[C-ID|beside|alone]] (or
# [[C-ID,C-ID2|...]]: any of them), and card_render.render, told which cards the engine shows
# after the card policy, keeps `beside` when a named card is on the same screen and `alone`
# otherwise: words that stand on their own (what to do, not where to look), or "" to drop the
# pointer. Neither part holds "|", "[" or "]".
CROSS_REF = re.compile(r"\[\[(C-[A-Z0-9-]+(?:,C-[A-Z0-9-]+)*)\|([^|\[\]]*)\|([^|\[\]]*)\]\]")


def cross_ref(card_ids: str, beside: str, alone: str = "") -> str:
    """The words `beside` when one of `card_ids` ("C-VITD-LOW", or several comma-separated) is on
    the same screen, else `alone` (see CROSS_REF): for facts and variables built in code."""
    text = f"[[{card_ids}|{beside}|{alone}]]"
    if not CROSS_REF.fullmatch(text):
        raise ValueError(f"bad cross-reference {text!r}")
    return text


def resolve_cross_refs(text: str, shown: Collection[str]) -> str:
    """`text` with each cross-reference worded for the cards `shown` on the screen."""
    if "[[" not in text:
        return text
    return CROSS_REF.sub(lambda m: m[2] if any(c in shown for c in m[1].split(",")) else m[3], text)


NO_TRIGGER = dt.date.min  # Finding.trigger when no data the card fired on counts as new

# A date in a fact: ISO (groups 1-3), or quoted as written to the year or month (record.PartialDate,
# groups 4-5: "on 2024", "since 2024-03") after the words facts put before a date ("ACP 2023" is none).
_FACT_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b|\b(?:on|since|started|recorded) (\d{4})(?:-(\d{2}))?(?![\w-])")


def trigger_date(finding: Finding, today: dt.date) -> dt.date | None:
    """The date of the newest data that made the card fire: Finding.trigger
    when the rule gives it, else the newest date before `today` written in its
    facts (YYYY-MM-DD, or a partial date as written, read as its first day). A card quieted by feedback comes back when this is
    later than the day the card acted on was issued (cds_service.card_policy).
    Dates of today are left out (facts such as "Age 76 on <today>" carry the
    evaluation day), and so are future ones (due dates)."""
    if finding.trigger is not None:
        return finding.trigger
    newest = None
    for fact in finding.facts:
        for match in _FACT_DATE.finditer(fact):
            year, month, mday, partial_year, partial_month = match.groups()
            try:
                day = (dt.date(int(year), int(month), int(mday)) if year else
                       dt.date(int(partial_year), int(partial_month or 1), 1))  # a partial date: its first day
            except ValueError:
                continue
            if day < today and (newest is None or day > newest):
                newest = day
    return newest


# A code as a fact quotes it: ICD-10-CM dotted ("S72.001A", "M80.08XA") or SNOMED CT digits; a
# sentence's full stop after it is not part of it.
_FACT_TOKEN = re.compile(r"[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*")


# An ICD-10-CM code with its 7th character, the encounter extension (S72.001A initial, D a
# follow-up visit, S sequela; M80.08XA, W19.XXXD).
_ICD10_EXTENDED = re.compile(r"[A-Z][0-9][0-9A-Z]\.[0-9A-Z]{3}[A-Z]")


def code_token(code: str) -> str:
    """A trigger token for a code: "code:" and the code, an ICD-10-CM encounter extension left
    out (a follow-up visit's S72.001D is the fracture of S72.001A, no new reason; a new fracture
    at the same site has a newer date)."""
    return f"code:{code[:-1] if _ICD10_EXTENDED.fullmatch(code) else code}"


def record_codes(record: PatientRecord) -> frozenset[str]:
    """Every Condition and fracture code the record holds, as facts quote them."""
    codes = {h.code for hits in record.conditions.values() for h in hits if h.code}
    for fracture in record.fractures:
        codes.update(c for c in (fracture.code, *fracture.codes) if c)
    return frozenset(codes)


def trigger_tokens(finding: Finding, codes: frozenset[str]) -> frozenset[str]:
    """What a card rests on, by content (card_policy: a token the card acted on did not hold
    wakes it): Finding.trigger_codes when the rule gives them, else the code_token of each code
    of `codes` (record_codes) its facts quote. In memory only: the store keeps keyed hashes
    (patient_key.trigger_key)."""
    if finding.trigger_codes is not None:
        return frozenset(finding.trigger_codes)
    if not codes:
        return frozenset()
    return frozenset(code_token(token) for fact in finding.facts for token in _FACT_TOKEN.findall(fact)
                     if token in codes)


Rule = Callable[[PatientRecord, dt.date, ClinicalSettings], list[Finding]]

_REGISTRY: dict[str, list[Rule]] = {hook: [] for hook in HOOKS}


def rule(*hooks: str, cards: tuple[str, ...] | None = None) -> Callable[[Rule], Rule]:
    """Register a rule for the given hooks (in import order). cards: every card id the
    rule can return (the engine's order review leaves out an order-sign rule none of whose
    cards can be critical, see engine._review_rules; tests check the declaration on every
    fixture); None: not declared, any card."""
    for hook in hooks:
        if hook not in _REGISTRY:
            raise ValueError(f"unknown hook {hook!r}")

    def register(fn: Rule) -> Rule:
        if cards is not None:
            fn.cards = tuple(cards)  # type: ignore[attr-defined]
        for hook in hooks:
            if fn not in _REGISTRY[hook]:
                _REGISTRY[hook].append(fn)
        return fn

    return register


# hook -> (the registry list it was sorted from, its length then, the sorted rules): the
# sort (and the imports of load_all) ran on every call, twice per suggested drug order.
_SORTED: dict[str, tuple[list[Rule], int, list[Rule]]] = {}


def rules_for(hook: str) -> list[Rule]:
    """Rules registered for a hook; importing cds_service.rules loads them all."""
    registered = _REGISTRY.get(hook)
    cached = _SORTED.get(hook)
    if cached is not None and cached[0] is registered and cached[1] == len(registered):
        return list(cached[2])
    from cds_service.rules import RULE_MODULES, load_all

    load_all()  # registration happens on import
    registered = _REGISTRY.get(hook, [])
    # Area order of RULE_MODULES, whatever order the modules happened to be imported in
    # (the engine orders cards of equal severity by it).
    def area(fn: Rule) -> int:
        name = getattr(fn, "__module__", "").rsplit(".", 1)[-1]
        return RULE_MODULES.index(name) if name in RULE_MODULES else len(RULE_MODULES)

    ordered = sorted(registered, key=area)
    _SORTED[hook] = (registered, len(registered), ordered)
    return list(ordered)
