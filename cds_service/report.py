"""Outcome report: which rules clinicians accept and which they override.

Per card id: cards issued, feedback received, acceptance and override rates
(of cards issued), and the most frequent override reasons. Ids and counts
only; nothing about patients is stored, so nothing about them can leak here.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

import sqlalchemy as sa

from cds_service.store import Store, feedback, issued_cards


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def outcome_report(store: Store, *, since: dt.datetime | None = None, top_reasons: int = 3) -> dict[str, Any]:
    issued_q = sa.select(issued_cards.c.card_id, sa.func.count()).group_by(issued_cards.c.card_id)
    fb_q = sa.select(feedback.c.card_id, feedback.c.card_uuid, feedback.c.outcome,
                     feedback.c.override_reason_system, feedback.c.override_reason_code)
    if since is not None:
        issued_q = issued_q.where(issued_cards.c.issued_at >= since)
        fb_q = fb_q.where(feedback.c.received_at >= since)
    with store.engine.connect() as conn:
        issued = {card_id: count for card_id, count in conn.execute(issued_q)}
        rows = conn.execute(fb_q).all()

    # A card counts once per outcome, however many times its feedback came.
    accepted: dict[str, set[str]] = defaultdict(set)
    overridden: dict[str, set[str]] = defaultdict(set)
    # A reason counts once per card too: a card overridden three times for one reason
    # counted 3 beside "overridden: 1" (operator review 16).
    reasons: dict[str, Counter] = defaultdict(Counter)
    reasons_seen: set[tuple[str, str, str, str]] = set()
    unknown = 0
    for card_id, card_uuid, outcome, system, code in rows:
        if card_id is None:
            unknown += 1
            continue
        (accepted if outcome == "accepted" else overridden)[card_id].add(card_uuid)
        reason = (system or "", code or "(no reason given)")
        if outcome == "overridden" and (card_uuid, *reason, card_id) not in reasons_seen:
            reasons_seen.add((card_uuid, *reason, card_id))
            reasons[card_id][reason] += 1

    cards = []
    for card_id in sorted(set(issued) | set(accepted) | set(overridden)):
        n = issued.get(card_id, 0)
        cards.append({
            "cardId": card_id,
            "issued": n,
            "accepted": len(accepted[card_id]),
            "overridden": len(overridden[card_id]),
            "acceptanceRate": _rate(len(accepted[card_id]), n),
            "overrideRate": _rate(len(overridden[card_id]), n),
            "topOverrideReasons": [
                {"system": system, "code": code, "count": count}
                for (system, code), count in reasons[card_id].most_common(top_reasons)
            ],
        })
    return {
        "since": since.isoformat() if since else None,
        "generatedAt": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cards": cards,
        "feedbackForUnknownCards": unknown,
    }


def as_text(report: dict[str, Any]) -> str:
    def pct(value):
        return "-" if value is None else f"{value * 100:.0f}%"

    lines = [f"{'card id':<24} {'issued':>7} {'accept':>7} {'override':>9}  top override reasons"]
    for row in report["cards"]:
        reasons = ", ".join(f"{r['code']} ({r['count']})" for r in row["topOverrideReasons"]) or "-"
        lines.append(f"{row['cardId']:<24} {row['issued']:>7} {pct(row['acceptanceRate']):>7} "
                     f"{pct(row['overrideRate']):>9}  {reasons}")
    lines.append(f"feedback for unknown cards: {report['feedbackForUnknownCards']}")
    return "\n".join(lines)
