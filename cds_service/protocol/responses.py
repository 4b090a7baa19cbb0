"""Turn the cards a service produced into a conformant CDS Hooks 2.0 response.

The last line of defence before anything reaches an EHR: every card and
suggestion gets a uuid; empty values (null, "", [], {}) are removed, as the
spec forbids them; summaries are kept under 140 characters; suggestions
without selectionBehavior get one; each suggested FHIR resource is validated
with fhir.resources (R4B models, the closest to R4) and a suggestion whose
resource fails is dropped and logged by rule id, never sent. A card that
lacks what the spec requires is dropped the same way.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

from cds_service.fhir.validation import fhir_problems
from cds_service.json_copy import plain_json

log = logging.getLogger(__name__)

INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}
SUMMARY_MAX = 139  # the spec: "<140 characters"


def _may_hold_empty(text: bytes) -> bool:
    """A match inside a string (a text ending in a quote) only sends a card the slow way."""
    return b"[]" in text or b"{}" in text or b'""' in text or b"null" in text


def _pruned_card(card: dict[str, Any]) -> dict[str, Any]:
    """prune_empty(card) as finish_card needs it. When the card's compact JSON
    shows nothing empty, as a rendered card's seldom does, it is not copied
    deep (reading the JSON back and comparing it cost as much as the check):
    finish_card only sets its top-level members and fills in its
    overrideReasons' displays, so those are copied; the rest is shared,
    unchanged, with the card given. A tuple stays a tuple (written alike)."""
    text = plain_json(card)
    if text is None or _may_hold_empty(text):
        return prune_empty(card)
    out = dict(card)
    if isinstance(out.get("overrideReasons"), (list, tuple)):
        out["overrideReasons"] = [dict(r) if isinstance(r, dict) else r for r in out["overrideReasons"]]
    return out


def prune_empty(value: Any) -> Any:
    """Recursively drop None, "", [] and {} (CDS Hooks forbids them), also
    containers left empty by the pruning; 0 and false stay. A new tree."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            item = _kept(item)
            if item is not _DROPPED:
                out[key] = item
        return out
    if isinstance(value, list):
        return [item for item in map(_kept, value) if item is not _DROPPED]
    return value


_DROPPED = object()


def _kept(item: Any) -> Any:
    """`item` pruned, or _DROPPED when it is empty (None, "", or a container left empty)."""
    if isinstance(item, (dict, list)):
        item = prune_empty(item)
        return item if item else _DROPPED
    return _DROPPED if item is None or item == "" else item


def new_uuid() -> str:
    """str(uuid.uuid4()), the same random version-4 uuid, written without a
    UUID object (less than half its cost: a card and each suggestion take one)."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40  # version 4
    b[8] = b[8] & 0x3F | 0x80  # variant RFC 4122
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def rule_id(card: dict[str, Any]) -> str:
    """The card's rule id (source.topic.code), for logs, metrics and the store."""
    topic = (card.get("source") or {}).get("topic") or {}
    return str(topic.get("code") or "unknown")


def _finish_suggestion(suggestion: dict[str, Any], rule: str) -> dict[str, Any] | None:
    actions = []
    for action in suggestion.get("actions") or []:
        if action.get("type") not in ("create", "update", "delete") or not action.get("description"):
            log.error("suggestion action dropped: no type or description", extra={"card_id": rule})
            return None
        if action["type"] in ("create", "update"):
            problem = fhir_problems(action.get("resource"))
            if problem:
                log.error("suggestion dropped: invalid FHIR resource",
                          extra={"card_id": rule, "problem": problem})
                return None
        elif not action.get("resourceId"):
            log.error("suggestion dropped: delete without resourceId", extra={"card_id": rule})
            return None
        actions.append(action)
    if not suggestion.get("label"):
        log.error("suggestion dropped: no label", extra={"card_id": rule})
        return None
    finished = dict(suggestion)
    if actions:
        finished["actions"] = actions
    finished["uuid"] = new_uuid()
    return finished


def finish_card(card: dict[str, Any]) -> dict[str, Any] | None:
    """The card made conformant, or None. Pruned once, first: what is added
    after (uuids, shortened summary, defaults) is never empty."""
    rule = rule_id(card)
    card = _pruned_card(card)
    if not card.get("summary") or card.get("indicator") not in INDICATOR_ORDER or not (card.get("source") or {}).get("label"):
        log.error("card dropped: summary, indicator or source.label missing", extra={"card_id": rule})
        return None
    if len(card["summary"]) > SUMMARY_MAX:
        log.warning("card summary shortened to the spec's limit", extra={"card_id": rule})
        card["summary"] = card["summary"][: SUMMARY_MAX - 1].rstrip() + "…"
    suggestions = [s for s in (_finish_suggestion(s, rule) for s in card.get("suggestions") or []) if s]
    if suggestions:
        card["suggestions"] = suggestions
        card.setdefault("selectionBehavior", "any")
    else:
        card.pop("suggestions", None)
        card.pop("selectionBehavior", None)
    for reason in card.get("overrideReasons") or []:
        if "display" not in reason and "code" in reason:
            reason["display"] = reason["code"]
    card["uuid"] = new_uuid()
    return card


def finish_cards(cards: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    finished = [c for c in (finish_card(card) for card in cards) if c]
    # Stable sort: the engine's order is kept within one indicator.
    finished.sort(key=lambda c: INDICATOR_ORDER[c["indicator"]])
    return finished
