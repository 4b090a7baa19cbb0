"""One log line per hook call at the production level (info): the request line,
which carries what the engine decided (card ids, how many cards the quieting or
the budget held back, how many resources could not be read). The engine's own
summary is a debug line."""

from __future__ import annotations

import json
import logging

from cds_service import fixtures as fx
from cds_service.logs import JsonFormatter
from conftest import TODAY


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def _call(make_app, level: str):
    app = make_app(CDS_LOG_LEVEL=level)
    bundle = fx.load_patient("c-anabolic-follow-on-near-miss-alendronate-started", today=TODAY)
    prefetch = fx.prefetch_from_bundle(bundle)
    prefetch["observations"]["entry"].append({"resource": {"id": "no-type"}})  # unreadable: no resourceType
    body = {"hookInstance": "5f0c6d2e-3b1a-4c8d-9e7f-0a1b2c3d4e5f", "hook": "patient-view", "prefetch": prefetch,
            "context": {"patientId": prefetch["patient"]["id"], "userId": "Practitioner/x"}}
    lines = _Lines()
    root = logging.getLogger()
    root.addHandler(lines)
    try:
        response = app.test_client().post("/cds-services/osteoporosis-patient-view", json=body)
    finally:
        root.removeHandler(lines)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["cards"], [line for line in lines.lines if logging.getLevelName(
        line["level"].upper()) >= root.level]


def test_a_hook_call_writes_one_line_with_what_was_decided(make_app):
    cards, lines = _call(make_app, "INFO")
    # (the unreadable resource also gets its own warning line, as before)
    assert [line["message"] for line in lines if line["level"] == "info"] == ["request"], lines
    line = next(line for line in lines if line["message"] == "request")
    assert line["card_ids"] == [c["source"]["topic"]["code"] for c in cards] and cards
    assert line["cards_held"] >= 1  # this chart's routine cards exceed the budget
    assert line["resources_skipped"] == 1
    assert line["hook_instance"] == "5f0c6d2e-3b1a-4c8d-9e7f-0a1b2c3d4e5f" and line["status"] == 200


def test_the_engine_summary_is_still_there_at_debug(make_app):
    _, lines = _call(make_app, "DEBUG")
    summary = [line["message"] for line in lines if line["logger"] == "cds_service.engine"]
    assert len(summary) == 1 and "held back; 1 resources skipped" in summary[0], summary
