"""Findings -> CDS Hooks card dicts, from the templates in cards/<id>.yaml.

No uuids here (the web layer adds them). Every suggested resource is filled
for the patient in context (subject, authoredOn, status draft, intent) and
validated with the fhir.resources R4B model; a template that fails is a bug:
`strict=True` raises, otherwise the suggestion is dropped and logged.

Card YAML (one file per card id):
  id, indicator (info|warning|critical), summary (<140 chars after filling),
  detail (markdown), source {label, url, topic_display},
  selectionBehavior (at-most-one|any), overrideReasons [codes from _override_reasons.yaml],
  resources {name: FHIR resource template}, suggestions [{key, label, isRecommended,
  actions: [{type: create|update, description, resource: <name>} | {type: delete, description}],
  partialLabel (optional: the label when Finding.left_out removed some actions)}],
  links (optional, CDS Hooks Link dicts).
Placeholders: {{name}} anywhere in summary, detail, labels, descriptions and
resource strings, from Finding.variables plus {{facts}}, {{today}}, {{patient_id}}.
Cross-references [[C-ID|beside|alone]] (rules.base.CROSS_REF) in the summary and detail, from
the template, a variable or a fact: `beside` when render() is told the named card is shown too.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import logging
import re
from collections.abc import Callable, Collection
from typing import Any

import orjson
import yaml

from cds_service.data_files import data_dir
from cds_service.logs import error_fields
from cds_service.fhir.validation import fhir_problems
from cds_service.json_copy import NOT_COPIED, json_copy
from cds_service.rules.base import CROSS_REF, INDICATORS, Action, Finding, Suggestion, resolve_cross_refs

log = logging.getLogger(__name__)

# The project's rule code system: source.topic.system on every card (README contract).
RULES_SYSTEM = "https://github.com/osteoporosis-cds/rules"
OVERRIDE_REASON_SYSTEM = "https://github.com/osteoporosis-cds/override-reasons"
SUMMARY_MAX = 139  # CDS Hooks: summary SHOULD be < 140 characters
SAFETY_CARD_PREFIXES = ("C-SAFE-", "C-MASSAGE-SAFETY")  # no "patient declined" when these are critical

_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class CardTemplateError(ValueError):
    """A card template or its filling is broken (a programming/data error)."""


@functools.lru_cache(maxsize=None)
def load_card(card_id: str) -> dict[str, Any]:
    path = data_dir() / "cards" / f"{card_id}.yaml"
    if not path.is_file():
        raise CardTemplateError(f"no card template {path.name}")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("id") != card_id:
        raise CardTemplateError(f"{path.name}: id must be {card_id}")
    if data.get("indicator") not in INDICATORS:
        raise CardTemplateError(f"{path.name}: bad indicator")
    return data


@functools.lru_cache(maxsize=None)
def override_reason_catalogue() -> dict[str, str]:
    path = data_dir() / "cards" / "_override_reasons.yaml"
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def card_ids() -> list[str]:
    return sorted(p.stem for p in (data_dir() / "cards").glob("C-*.yaml"))


def _fill(text: str, variables: dict[str, str]) -> str:
    if "{{" not in text:  # most template strings hold no placeholder
        return text
    parts = _FILL_PARTS.get(text)
    if parts is None:
        parts = _PLACEHOLDER.split(text)  # text, name, text, name, ..., text
        if len(_FILL_PARTS) < _FILL_PARTS_MAX:
            _FILL_PARTS[text] = parts
    pieces = [parts[0]]
    for i in range(1, len(parts), 2):
        name = parts[i]
        if name not in variables:
            raise CardTemplateError(f"no value for placeholder {{{{{name}}}}}")
        pieces += (str(variables[name]), parts[i + 1])
    return "".join(pieces)


# Template text -> its pieces split at the placeholders: a card fills its template strings
# (summary, detail, labels, order fields) on every call, and re.sub with a Python callback
# per placeholder cost about three times the join. Templates are few; the bound only
# guards against a caller filling text that is not one.
_FILL_PARTS: dict[str, list[str]] = {}
_FILL_PARTS_MAX = 4096


def _fill_tree(value: Any, variables: dict[str, str]) -> Any:
    """A new tree with every string filled (containers are new, so the
    result can be changed without touching the cached template)."""
    if isinstance(value, str):
        return _fill(value, variables)
    if isinstance(value, dict):
        return {k: v if v is None or type(v) in _ATOMS else _fill_tree(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [v if v is None or type(v) in _ATOMS else _fill_tree(v, variables) for v in value]
    return value


_ATOMS = frozenset({int, float, bool})

Path_ = tuple[Any, ...]


def _filled_resource(template: dict[str, Any], variables: dict[str, str]) -> dict[str, Any]:
    """_fill_tree(template) for a suggested-order template, done as a C-speed
    copy of the template's JSON and a fill of just its placeholder strings
    (walking every member of a 40-member order in Python cost most of a card)."""
    compiled = _compiled(template)
    if compiled is None:
        return _fill_tree(template, variables)
    text, slots = compiled
    tree = orjson.loads(text)
    for path, value in slots:
        parent = tree
        for step in path[:-1]:
            parent = parent[step]
        parent[path[-1]] = _fill(value, variables)
    return tree


# id(template) -> (template, compiled): templates are cached by load_card, so
# this holds one entry per template; a reloaded (changed) template is a new
# object and is compiled anew.
_COMPILED: dict[int, tuple[dict[str, Any], tuple[bytes, list[tuple[Path_, str]]] | None]] = {}


def _compiled(template: dict[str, Any]) -> tuple[bytes, list[tuple[Path_, str]]] | None:
    entry = _COMPILED.get(id(template))
    if entry is None or entry[0] is not template:
        entry = (template, _compile(template))
        _COMPILED[id(template)] = entry
    return entry[1]


def _compile(template: dict[str, Any]) -> tuple[bytes, list[tuple[Path_, str]]] | None:
    try:
        text = orjson.dumps(template)
    except TypeError:
        return None
    if orjson.loads(text) != template:  # not plain JSON (a date YAML read, say): walk it instead
        return None
    slots: list[tuple[Path_, str]] = []

    def find(value: Any, path: Path_) -> None:
        if isinstance(value, str):
            if "{{" in value:
                slots.append((path, value))
        elif isinstance(value, dict):
            for key, item in value.items():
                find(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                find(item, (*path, i))

    find(template, ())
    return text, slots


def prepare_resource(template: dict[str, Any], patient_id: str | None, today: dt.date) -> dict[str, Any]:
    """Fill the patient-context fields of a suggested order (in a copy)."""
    return _fill_context(_deep_copy(template), patient_id, today)


def _deep_copy(tree: Any) -> Any:
    """copy.deepcopy(tree), through orjson when that gives an equal tree (plain JSON data,
    as the orders rules build are)."""
    copied = json_copy(tree)
    return copy.deepcopy(tree) if copied is NOT_COPIED else copied


def _fill_context(res: dict[str, Any], patient_id: str | None, today: dt.date) -> dict[str, Any]:
    rtype = res.get("resourceType")
    if patient_id and rtype not in ("Patient",):
        res.setdefault("subject", {"reference": f"Patient/{patient_id}"})
    if rtype in ("MedicationRequest", "ServiceRequest"):
        res.setdefault("status", "draft")
        res.setdefault("intent", "order")
        res.setdefault("authoredOn", today.isoformat())
    return res


def validate_resource(resource: dict[str, Any]) -> None:
    """Raise if the resource is not valid FHIR R4 (R4B models). Shares its
    (cached) check with the web layer's, which checks the same resource again."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise CardTemplateError("resource without resourceType")
    problem = fhir_problems(resource)
    if problem:
        raise CardTemplateError(f"invalid {rtype}: {problem[:300]}")


def _action(spec: dict[str, Any], card: dict[str, Any], finding: Finding, variables: dict[str, str],
            patient_id: str | None, today: dt.date) -> dict[str, Any]:
    kind = spec.get("type")
    out: dict[str, Any] = {"type": kind, "description": _fill(spec.get("description", ""), variables)}
    if kind == "delete":
        if not finding.delete_draft:
            raise CardTemplateError(f"{card['id']}: delete action without Finding.delete_draft")
        # A single relative reference (string), as the HL7 logical model
        # CDSHooksResponse defines it (actions.resourceId 0..1 string).
        out["resourceId"] = finding.delete_draft
        return out
    name = spec.get("resource")
    template = (card.get("resources") or {}).get(name)
    if not isinstance(template, dict):
        raise CardTemplateError(f"{card['id']}: unknown resource template {name!r}")
    # A new tree: no copy needed to fill it in place.
    resource = _fill_context(_filled_resource(template, variables), patient_id, today)
    validate_resource(resource)
    out["resource"] = resource
    return out


def yaml_suggestion(card_id: str, key: str, variables: dict[str, str]) -> Suggestion:
    """A card's YAML suggestion `key` (create actions), filled and built as a Suggestion that is not
    recommended: for a rule that lists it after one built in code (YAML keys come first)."""
    card = load_card(card_id)
    spec = next(s for s in card.get("suggestions") or () if s.get("key") == key)
    return Suggestion(_fill(spec["label"], variables), tuple(
        Action("create", _fill(a.get("description", ""), variables),
               resource=_filled_resource(card["resources"][a["resource"]], variables))
        for a in spec.get("actions") or ()))


def _built_suggestion(s: Suggestion, patient_id: str | None, today: dt.date) -> dict[str, Any]:
    actions = []
    for a in s.actions:
        if a.type == "delete":
            # resourceId is one relative reference: one delete action per resource.
            actions.extend({"type": "delete", "description": a.description, "resourceId": ref}
                           for ref in a.resource_id)
            continue
        resource = prepare_resource(dict(a.resource or {}), patient_id, today)
        validate_resource(resource)
        actions.append({"type": a.type, "description": a.description, "resource": resource})
    return {"label": s.label, "isRecommended": s.is_recommended, "actions": actions}


def _kept(spec: dict[str, Any], finding: Finding, variables: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """A YAML suggestion's label and actions without those of Finding.left_out. Shortened, it
    takes its `partialLabel`, where {{left_in}} lists the descriptions of the actions kept."""
    actions = list(spec.get("actions") or ())
    kept = [a for a in actions if a.get("resource") not in finding.left_out] if finding.left_out else actions
    if len(kept) < len(actions) and spec.get("partialLabel"):
        left_in = ", ".join(_fill(a.get("description", ""), variables) for a in kept)
        return _fill(spec["partialLabel"], {**variables, "left_in": left_in}), kept
    return _fill(spec.get("label", ""), variables), kept


def suggestion_orders(finding: Finding, *, patient_id: str | None, today: dt.date,
                      resource_types: frozenset[str] | None = None,
                      ) -> list[tuple[tuple[str, Any], list[dict[str, Any]], Callable[[], bool]]]:
    """The resources each of a finding's suggestions would create, as
    [(("key", yaml key) or ("extra", index), [resource, ...], renders)]. A suggestion whose
    template does not render is left out (render() drops it too).

    With `resource_types`, only resources of those types are listed: a YAML suggestion's
    resources whose template names another type are not even filled, and `renders()`
    says whether they would render too (if not, the suggestion is one render() drops).
    Without it every resource is listed; for the suggestions built in code `renders()`
    is True."""
    out: list[tuple[tuple[str, Any], list[dict[str, Any]], Callable[[], bool]]] = []
    card = load_card(finding.card_id)
    variables = {"today": today.isoformat(), "patient_id": patient_id or ""}
    variables.update({k: str(v) for k, v in finding.variables.items()})
    by_key = {s.get("key"): s for s in card.get("suggestions") or ()}
    for key in finding.suggestions if finding.suggestions is not None else list(by_key):
        try:
            specs = [a for a in _kept(by_key[key], finding, variables)[1] if a.get("type") in ("create", "update")]
            later = [a for a in specs if _other_type(a, card, resource_types)]
            resources = [_action(a, card, finding, variables, patient_id, today)["resource"]
                         for a in specs if not any(a is b for b in later)]
        except (KeyError, CardTemplateError):
            continue
        out.append((("key", key), _of_types(resources, resource_types),
                    functools.partial(_renders, later, card, finding, variables, patient_id, today)))
    for i, s in enumerate(finding.extra_suggestions):
        # An update that stops an order (rules.orders.stop_actions) orders nothing: it is never
        # judged as a new order (engine.withhold_vetoed_orders would read a stopped alendronate
        # order as an alendronate order and drop the stop beside, e.g., a pregnancy).
        built = [dict(a.resource) for a in s.actions if a.type in ("create", "update") and a.resource
                 and a.resource.get("status") != "stopped"]
        out.append((("extra", i), _of_types(built, resource_types), _always))
    return out


def _of_types(resources: list[dict[str, Any]], resource_types: frozenset[str] | None) -> list[dict[str, Any]]:
    """The resources of `resource_types` (a template's type written with a variable is
    known only once filled), or all of them."""
    if resource_types is None:
        return resources
    return [r for r in resources if r.get("resourceType") in resource_types]


def _other_type(spec: dict[str, Any], card: dict[str, Any], resource_types: frozenset[str] | None) -> bool:
    """The action's resource template names a type outside `resource_types`."""
    if resource_types is None:
        return False
    template = (card.get("resources") or {}).get(spec.get("resource"))
    rtype = template.get("resourceType") if isinstance(template, dict) else None
    return isinstance(rtype, str) and "{{" not in rtype and rtype not in resource_types


def _renders(specs: list[dict[str, Any]], card: dict[str, Any], finding: Finding, variables: dict[str, str],
             patient_id: str | None, today: dt.date) -> bool:
    try:
        for spec in specs:
            _action(spec, card, finding, variables, patient_id, today)
    except CardTemplateError:
        return False
    return True


def _always() -> bool:
    return True


@functools.lru_cache(maxsize=1)
def _card_id_set() -> frozenset[str]:
    return frozenset(card_ids())


def _cross_refs(text: str, shown: Collection[str], strict: bool) -> str:
    """`text` with its cross-references worded for the cards `shown`; strict: each names a card
    of the catalogue, and no "[[" is left that is not one (a malformed cross-reference)."""
    if "[[" not in text:
        return text
    if strict:
        known = _card_id_set()
        for match in CROSS_REF.finditer(text):
            unknown = [c for c in match[1].split(",") if c not in known]
            if unknown:
                raise CardTemplateError(f"cross-reference to unknown card {unknown[0]}")
    out = resolve_cross_refs(text, shown)
    if strict and "[[" in out:
        raise CardTemplateError("malformed cross-reference")
    return out


_BLANK_LINES = re.compile(r"\n\s*\n(?:\s*\n)+")


def render(finding: Finding, *, patient_id: str | None, today: dt.date, strict: bool = False,
           shown: Collection[str] = ()) -> dict[str, Any] | None:
    """One Finding -> one card dict. Non-strict: a broken template logs the
    card id and returns None (or drops just the broken suggestion). `shown`: the card ids on
    the same screen; a cross-reference (rules.base.CROSS_REF) in the summary or detail names
    one of them, or takes its words that stand alone."""
    try:
        card = load_card(finding.card_id)
        variables = {"today": today.isoformat(), "patient_id": patient_id or ""}
        variables.update({k: str(v) for k, v in finding.variables.items()})
        variables["facts"] = "\n".join(f"- {f}" for f in finding.facts) or "- (none)"
        text = card
        if finding.variant is not None:
            text = (card.get("variants") or {}).get(finding.variant)
            if not isinstance(text, dict) or "summary" not in text or "detail" not in text:
                raise CardTemplateError(f"{finding.card_id}: no variant {finding.variant!r}")
        summary = _cross_refs(_fill(text["summary"], variables), shown, strict).strip()
        if len(summary) > SUMMARY_MAX:
            if strict:
                raise CardTemplateError(f"{finding.card_id}: summary longer than {SUMMARY_MAX}")
            summary = summary[:SUMMARY_MAX - 1].rstrip() + "…"
        source = card.get("source") or {}
        out: dict[str, Any] = {
            "summary": summary,
            # A variable left empty (no labs note) leaves no run of blank lines behind.
            "detail": _BLANK_LINES.sub("\n\n", _cross_refs(_fill(text.get("detail", ""), variables), shown,
                                                            strict).strip()),
            "indicator": finding.indicator or card["indicator"],
            "source": {
                "label": source.get("label", ""),
                "url": finding.source_url or source.get("url", ""),
                "topic": {"system": RULES_SYSTEM, "code": finding.card_id,
                          "display": source.get("topic_display", finding.card_id)},
            },
        }
    except CardTemplateError as exc:
        if strict:
            raise
        # Type and place only: a validation message quotes the values (patient data).
        log.error("card %s could not be rendered", finding.card_id, extra=error_fields(exc))
        return None

    suggestions = []
    by_key = {s.get("key"): s for s in card.get("suggestions") or ()}
    keys = finding.suggestions if finding.suggestions is not None else list(by_key)
    for key in keys:
        try:
            spec = by_key.get(key)
            if spec is None:
                raise CardTemplateError(f"{finding.card_id}: no suggestion {key!r}")
            label, kept = _kept(spec, finding, variables)
            if not kept:
                continue  # every action left out (Finding.left_out): nothing to suggest
            suggestions.append({
                "label": label,
                "isRecommended": bool(spec.get("isRecommended", False)),
                "actions": [_action(a, card, finding, variables, patient_id, today) for a in kept],
            })
        except CardTemplateError as exc:
            if strict:
                raise
            log.error("card %s: suggestion %s dropped", finding.card_id, key, extra=error_fields(exc))
    for extra in finding.extra_suggestions:
        if not extra.actions:
            continue  # everything it would order is on record already (e.g. facts.ckd_mbd_done)
        try:
            suggestions.append(_built_suggestion(extra, patient_id, today))
        except CardTemplateError as exc:
            if strict:
                raise
            log.error("card %s: built suggestion dropped", finding.card_id, extra=error_fields(exc))
    if suggestions:
        out["suggestions"] = suggestions
        out["selectionBehavior"] = card.get("selectionBehavior", "at-most-one")
        if out["selectionBehavior"] == "at-most-one":
            # CDS Hooks: at most one recommended suggestion among mutually exclusive ones; the
            # first one listed (the rule's order) keeps the flag.
            first = next((i for i, sug in enumerate(suggestions) if sug["isRecommended"]), None)
            for i, sug in enumerate(suggestions):
                sug["isRecommended"] = sug["isRecommended"] and i == first
    reasons = override_reason_catalogue()
    codes = [c for c in card.get("overrideReasons") or () if c in reasons]
    if len(codes) != len(card.get("overrideReasons") or ()) and strict:
        raise CardTemplateError(f"{finding.card_id}: unknown override reason")
    if out["indicator"] == "critical" and finding.card_id.startswith(SAFETY_CARD_PREFIXES):
        # second-pass 9: a label contraindication or imminent harm is not overridden by "patient declined"
        codes = [c for c in codes if c != "patient-declined"]
    if codes:
        out["overrideReasons"] = [{"system": OVERRIDE_REASON_SYSTEM, "code": c, "display": reasons[c]} for c in codes]
    if card.get("links"):
        out["links"] = _fill_tree(card["links"], variables)
    return out


__all__ = ["RULES_SYSTEM", "OVERRIDE_REASON_SYSTEM", "render", "suggestion_orders", "load_card", "card_ids", "data_dir",
           "validate_resource", "prepare_resource", "CardTemplateError", "Action", "Suggestion"]
