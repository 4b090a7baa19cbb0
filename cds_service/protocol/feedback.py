"""POST /cds-services/{id}/feedback: store what the clinician did with a card.

Answers 200 only after every entry is committed, all in one transaction (a
request is stored whole or not at all); values the database could not hold
are refused by the schema (400), so a 503 always means "send it again"; a
resubmission is
recognised and not stored twice (its outcomeTimestamp compared in UTC);
feedback for a card this service never issued (or whose record was lost) is
stored and flagged, not refused (the same entry resent later to the service
that issued the card becomes that card's own). Feedback for a card issued to another client
(another issuer or tenant) is neither stored nor refused: it counts as an
unknown card, and cannot quiet that client's card. An accepted suggestion
the card never carried is a 400.
"""

from __future__ import annotations

import logging

from flask import Blueprint, g, jsonify

from cds_service import metrics
from cds_service.db_schema import is_schema_error
from cds_service.protocol import schemas
from cds_service.protocol.errors import RETRY_AFTER_SECONDS, ApiError
from cds_service.protocol.hooks import accept_call, caller
from cds_service.protocol.runtime import runtime
from cds_service.store import UNAVAILABLE, FeedbackEntry, UnknownSuggestion

log = logging.getLogger(__name__)

bp = Blueprint("feedback", __name__)


def _entry(item: dict) -> FeedbackEntry:
    reason = (item.get("overrideReason") or {}).get("reason") or {}
    return FeedbackEntry(
        card_uuid=item["card"],
        outcome=item["outcome"],
        outcome_timestamp=item["outcomeTimestamp"],
        accepted_suggestions=tuple(s["id"] for s in item.get("acceptedSuggestions") or []),
        override_reason_system=reason.get("system"),
        override_reason_code=reason.get("code"),
        override_comment=(item.get("overrideReason") or {}).get("userComment"),
    )


@bp.post("/cds-services/<service_id>/feedback")
def post_feedback(service_id: str):
    rt = runtime()
    service, body = accept_call(service_id, f"/cds-services/{service_id}/feedback")
    problems = schemas.errors("FeedbackRequest", body,
                              max_items={"feedback": rt.settings.max_feedback_entries})
    if problems:
        raise ApiError(400, f"the feedback is not valid: {problems[0]}", code="invalid_feedback",
                       details=problems[:20])
    entries = [_entry(item) for item in body["feedback"]]
    try:
        result = rt.store.store_feedback(service.id, entries, client=caller())
    except UnknownSuggestion as exc:
        raise ApiError(400, f"the feedback is not valid: {exc}", code="invalid_feedback",
                       details=[str(exc)]) from None
    except UNAVAILABLE as exc:
        if is_schema_error(exc):
            raise  # the app's answer for a schema not this release's (protocol/errors.py)
        # Nothing was stored (one transaction): the whole request may be resent.
        log.error("feedback not stored", extra={"error_type": type(exc).__name__})
        raise ApiError(503, "feedback could not be stored now; please send it again", code="store_unavailable",
                       headers={"Retry-After": RETRY_AFTER_SECONDS}) from None
    if result.foreign:
        log.warning("feedback for cards issued to another client ignored", extra={"count": result.foreign})
    g.feedback_outcomes = [e.outcome for e in entries]
    # Resubmissions (EHR retries) are not counted again, so rates computed
    # from this counter agree with the outcome report.
    for entry, card_id, is_new in zip(entries, result.card_ids, result.new, strict=True):
        if is_new:
            metrics.FEEDBACK.labels(card_id or "unknown", entry.outcome).inc()
    return jsonify({"stored": result.stored, "duplicates": result.duplicates, "unknownCards": result.unknown_cards})
