"""The JSON log formatter: one object per line, no terminal colour codes, an
exception's type but never its text."""

from __future__ import annotations

import json
import logging
import sys

from cds_service.logs import JsonFormatter


def _format(message: str, exc_info=None) -> dict:
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1, message, (), exc_info)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def test_colour_codes_of_the_development_server_are_dropped():
    # werkzeug colours the status of its request lines on a terminal.
    entry = _format('127.0.0.1 - - "GET /cds-services HTTP/1.1" \x1b[32m200\x1b[0m -')
    assert entry["message"] == '127.0.0.1 - - "GET /cds-services HTTP/1.1" 200 -'


def test_an_exception_is_logged_by_type_only():
    try:
        raise ValueError("T-score -3.1 for Jane Doe")
    except ValueError:
        entry = _format("failed", exc_info=sys.exc_info())
    assert entry["error_type"] == "ValueError"
    assert "Jane" not in json.dumps(entry)
