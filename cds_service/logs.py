"""Structured JSON logs: one object per line, ids and timings only.

Patient data never reaches a log call in this code base; as a second guard
the formatter only emits the standard fields and a fixed list of extras, so
a stray `extra={...}` with a resource in it is not written out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import traceback

ALLOWED_EXTRAS = (
    "event", "method", "path", "status", "duration_ms", "queue_ms", "fetch_ms", "service_id", "hook_instance",
    "card_ids", "cards_held", "resources_skipped", "feedback_outcomes", "error_type", "where", "card_id",
    "problem", "prefetch_key", "resource_type", "resource_id", "skipped", "auth_reason", "issuer", "tenant",
    "count", "prefetch_missing", "prefetch_failed", "schema_status", "schema_revision", "schema_head",
)

# Terminal colour codes: the development server (werkzeug) colours its request
# lines; inside a JSON string they are noise.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# json.dumps(entry, default=str) without making a new encoder for every line.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if "\x1b" in message:
            message = _ANSI.sub("", message)
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message,
        }
        fields = record.__dict__
        for key in ALLOWED_EXTRAS:
            value = fields.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info and "error_type" not in entry:
            # The type only, never the traceback text (see error_fields).
            entry["error_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return _ENCODER.encode(entry)


def error_fields(exc: BaseException) -> dict[str, object]:
    """Log extras for a caught exception: its type and where it happened, never
    its message or traceback text (a ValueError or a pydantic error quotes the
    value it choked on, which may be patient data). Use instead of
    log.exception(): `log.error("...", extra=error_fields(exc))`."""
    frames = traceback.extract_tb(exc.__traceback__)
    return {"error_type": type(exc).__name__,
            "where": [f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}:{f.name}" for f in frames[-6:]]}


# Third-party loggers that write request URLs at DEBUG: urllib3 logs every
# outbound request line, and a FHIR search URL carries the patient's id.
QUIET_LOGGERS = ("urllib3", "alembic")  # urllib3 logs URLs (patient ids); alembic chats at start-up


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
