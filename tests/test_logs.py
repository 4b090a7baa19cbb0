"""The JSON log formatter: one object per line, no terminal colour codes, an
exception's type but never its text."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

from cds_service.logs import JsonFormatter
from cds_service.record import build_record


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


def test_the_record_logs_what_it_ignored_or_skipped_by_type_and_reason_only(caplog):
    """Resource ids are not logged: one may be the context patient's (their Patient ignored
    for an impossible birthDate), another patient's, or free text a client wrote there."""
    free_text = "Jane Doe DOB 1950-01-01 SSN 123-45-6789 " + "x" * 3000
    prefetch = {"patient": {"resourceType": "Patient", "id": "pat-77", "birthDate": "1800-01-01"},
                "all": {"resourceType": "Bundle", "entry": [
                    {"resource": {"resourceType": "Observation", "id": free_text,
                                  "subject": {"reference": "Patient/other-patient-77"}}},
                    {"resource": {"resourceType": "Patient", "id": "other-patient-78"}},
                    {"resource": {"resourceType": "MedicationRequest", "id": free_text, "status": "completed",
                                  "subject": {"reference": "Patient/pat-77"}, "dispenseRequest": "no object",
                                  "medicationCodeableConcept": {"coding": [{
                                      "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "904431"}]}}},
                ]}}
    with caplog.at_level(logging.WARNING, logger="cds_service.record"):
        built = build_record(prefetch, today=dt.date(2026, 11, 30), patient_id="pat-77")
    assert len(built.ignored) == 3 and len(built.skipped) == 1  # the record keeps the ids; the log does not
    assert [r.getMessage() for r in caplog.records] == [
        "record: skipped 1 unreadable resources: MedicationRequest 1",
        "record: ignored 3 resources or values: Observation foreign-patient 1, Patient foreign-patient 1, "
        "Patient implausible-value 1"]
