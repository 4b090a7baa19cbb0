"""A long prefetch is read with its Bundle entries kept as text until the record
builder reaches each (cds_service.fhir.deferred), so a long chart never exists
whole as Python objects. Nothing else may change: the same record for every
fixture and real-world chart, the same cards through the app, and the same 400
for every body the eager parse refuses."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import re

import msgspec
import pytest
import responses

from benchmarks.generate import patient_view_request
from cds_service import fixtures as fx
from cds_service import record
from cds_service.fhir import deferred
from cds_service.protocol import requests_json
from cds_service.protocol.errors import ApiError

TODAY = dt.date(2026, 11, 30)
SERVER = "https://fhir.example.org/r4"


def _search_urls(value):
    """fullUrls as a FHIR server's search writes them (urn: ones keep a Bundle eager)."""
    for entry in (value or {}).get("entry") or ():
        resource = entry.get("resource") or {}
        entry["fullUrl"] = f"{SERVER}/{resource.get('resourceType')}/{resource.get('id')}"
    return value


def _charts():
    for name in fx.patient_names():
        bundle = fx.load_patient(name, today=TODAY)
        prefetch = {k: _search_urls(copy.deepcopy(v)) for k, v in fx.prefetch_from_bundle(bundle).items()}
        yield name, prefetch, (prefetch.get("patient") or {}).get("id") or "none"
    for path in fx.realworld_paths("synthea"):
        resources = fx.load_realworld(path, today=TODAY)
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}
        yield path.name, {"all": _search_urls(bundle)}, pid


def _record(prefetch, pid):
    return record.build_record(prefetch, today=TODAY, patient_id=pid, fhir_server=SERVER)


def _same(a, b, name):
    for field in dataclasses.fields(record.PatientRecord):
        assert getattr(a, field.name) == getattr(b, field.name), (name, field.name)
    assert repr(a) == repr(b), name


def _deferred_entries(prefetch) -> int:
    return sum(type(e) is deferred.Deferred for v in prefetch.values() if isinstance(v, dict)
               for e in (v.get("entry") if isinstance(v.get("entry"), list) else ()))


def test_every_chart_gives_the_same_record_with_entries_deferred(monkeypatch):
    monkeypatch.setattr(deferred, "_SMALL_VALUE_BYTES", 0)  # every Bundle deferred, however short
    seen = total = 0
    for name, prefetch, pid in _charts():
        raw = json.dumps(prefetch, ensure_ascii=False).encode()  # an escape keeps a Bundle eager
        lazy = deferred.decode_prefetch(raw)
        seen += _deferred_entries(lazy) > 0
        total += 1
        _same(_record(lazy, pid), _record(msgspec.json.decode(raw), pid), name)
    assert seen > 400, (seen, total)


def _long_request(n: int = 1600) -> dict:
    body = patient_view_request(n, today=TODAY)
    body["fhirServer"] = SERVER
    return body


def _no_deferring(monkeypatch):
    monkeypatch.setattr(deferred, "DEFER_BYTES", 1 << 40)


def test_a_long_chart_is_parsed_with_its_entries_as_text():
    raw = json.dumps(_long_request()).encode()
    assert len(raw) > deferred.DEFER_BYTES
    body = requests_json.parse_json(raw)
    assert _deferred_entries(body["prefetch"]) > 1000
    assert body["prefetch"]["patient"] == json.loads(raw)["prefetch"]["patient"]  # short values whole


def test_the_cards_of_a_long_chart_are_the_same_deferred_or_not(client, monkeypatch):
    raw = json.dumps(_long_request()).encode()

    def cards():
        response = client.post("/cds-services/osteoporosis-patient-view", data=raw,
                               content_type="application/json")
        assert response.status_code == 200, response.get_json()
        return [{k: v for k, v in c.items() if k != "uuid"} | {"suggestions": [
            {k: v for k, v in s.items() if k != "uuid"} for s in c.get("suggestions", [])]}
            for c in response.get_json()["cards"]]

    deferred_cards = cards()
    with monkeypatch.context() as patched:
        _no_deferring(patched)
        assert cards() == deferred_cards
    assert deferred_cards  # the benchmark patient is untreated: cards fire


def _outcome(raw: bytes):
    try:
        return "value", repr(requests_json.parse_json(raw)["prefetch"]["observations"]["entry"][:0])
    except ApiError as exc:
        return "error", f"{exc.status} {exc.code} {exc.message}"


def _with_value(text: bytes) -> bytes:
    """A long request with one Observation's valueQuantity.value written as `text`."""
    raw = json.dumps(_long_request()).encode()
    at = raw.index(b'"value": ', raw.index(b'"observations"')) + len(b'"value": ')
    end = re.search(rb"[,}]", raw[at:]).start() + at
    return raw[:at] + text + raw[end:]


def _answered_alike(raw: bytes, monkeypatch, prefetch_at: int | None = None):
    """The answer to a body whose prefetch can_defer turns away: the eager read's answer."""
    at = raw.index(b'"prefetch"') if prefetch_at is None else prefetch_at
    assert not deferred.can_defer(memoryview(raw)[at:])
    got = _outcome(raw)
    with monkeypatch.context() as patched:
        _no_deferring(patched)
        assert _outcome(raw) == got
    return got


@pytest.mark.parametrize("text", [b"1e999", b"-1E+400", b"1" * 320 + b".5", b"2" * 5000, b'"caf\xe9"', b'"\xff"'])
def test_what_the_eager_parse_refuses_or_keeps_is_answered_alike(text, monkeypatch):
    got = _answered_alike(_with_value(text), monkeypatch)
    if text in (b"1e999", b"-1E+400", b'"\xff"', b'"caf\xe9"'):
        assert got[0] == "error" and got[1].startswith("400 invalid_json"), got


def test_plain_numbers_and_text_let_entries_be_deferred():
    for text in (b"1e30", b"-2.5E-7", b"123456789012345678901234567890", b'"caf\\u00e9"', '"café"'.encode()):
        raw = _with_value(text)
        assert deferred.can_defer(raw), text
    # a UTF-8 character cut by the 1 MB pieces of the check is still read as one
    raw = b'"' + b"a" * ((1 << 20) - 2) + "é".encode() + b'"'
    assert raw[(1 << 20) - 1:(1 << 20) + 1] == "é".encode() and deferred.can_defer(raw)
    assert not deferred.can_defer(raw[:-2])  # ends inside the character


def _observations_deferred(raw: bytes) -> bool:
    return all(type(e) is deferred.Deferred for e in requests_json.parse_json(raw)["prefetch"]["observations"]["entry"])


def test_a_bundle_that_could_name_an_alias_is_parsed_at_once():
    body = _long_request()
    assert _observations_deferred(json.dumps(body).encode())
    entry = body["prefetch"]["observations"]["entry"][5]
    entry["fullUrl"] = "urn:uuid:" + entry["resource"]["id"]
    assert not _observations_deferred(json.dumps(body).encode())
    entry["fullUrl"] = "https://fhir.example.org/r4/Observation/x"
    entry["resource"]["code"]["text"] = "DXA \u00e9"
    assert _observations_deferred(json.dumps(body).encode())  # an escaped é spells no urn:
    raw = json.dumps(body).encode().replace(b"DXA \\u00e9", b"\\u0075rn:")
    assert not _observations_deferred(raw)  # an escaped u could
    # a code system under urn:oid (as EHRs write many) names no alias
    entry["resource"]["code"]["coding"][0]["system"] = "urn:oid:1.2.840.114350"
    assert _observations_deferred(json.dumps(body).encode())


def test_a_bundle_that_could_hold_a_bundle_is_parsed_at_once():
    """The resource limit counts the entries of a Bundle within an entry (bind8 L4), which an
    entry kept as text would hide: "Bundle" anywhere, or an escape of one of its letters, keeps
    the entries parsed."""
    body = _long_request()
    assert _observations_deferred(json.dumps(body).encode())
    entry = body["prefetch"]["observations"]["entry"][5]
    entry["resource"] = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": entry["resource"]}]}
    raw = json.dumps(body).encode()
    assert not _observations_deferred(raw)
    for spelled in (b"\\u0042undle", b"Bun\\u0064le", b"B\\u0075ndle"):
        escaped = raw.replace(b'"Bundle", "type": "collection"', b'"' + spelled + b'", "type": "collection"')
        assert escaped.count(b"Bundle") == raw.count(b"Bundle") - 1
        assert not _observations_deferred(escaped)


def test_the_context_patient_under_a_urn_full_url_binds_as_before(monkeypatch):
    """A transaction-shaped Bundle names the patient by urn:uuid and its resources
    refer to that: the record keeps them, deferred or not."""
    monkeypatch.setattr(deferred, "_SMALL_VALUE_BYTES", 0)
    body = _long_request(200)
    pid = body["context"]["patientId"]
    entries = body["prefetch"]["observations"]["entry"]
    entries.insert(0, {"fullUrl": "urn:uuid:p-1", "resource": body["prefetch"]["patient"]})
    for entry in entries[1:40]:
        entry["resource"]["subject"] = {"reference": "urn:uuid:p-1"}
    raw = json.dumps(body["prefetch"]).encode()
    lazy = deferred.decode_prefetch(raw)
    _same(_record(lazy, pid), _record(msgspec.json.decode(raw), pid), "urn alias")
    assert not _record(lazy, pid).ignored


def test_a_long_first_page_is_completed_from_the_server(client, monkeypatch):
    """Entries kept as text and entries of a fetched page, merged in one Bundle."""
    body = _long_request()
    first = body["prefetch"]["observations"]
    first["link"] = [{"relation": "next", "url": f"{SERVER}/Observation?patient={body['context']['patientId']}&page=2"}]
    second = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": f"{SERVER}/Observation/late-1", "resource": {
            "resourceType": "Observation", "id": "late-1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "38263-3"}]},
            "subject": {"reference": f"Patient/{body['context']['patientId']}"},
            "effectiveDateTime": "2026-11-01", "valueQuantity": {"value": -3.1}}}]}
    raw = json.dumps(body).encode()

    def answer():
        with responses.RequestsMock() as fhir:
            fhir.get(f"{SERVER}/Observation", json=second)
            response = client.post("/cds-services/osteoporosis-patient-view", data=raw,
                                   content_type="application/json")
            assert len(fhir.calls) == 1
        assert response.status_code == 200, response.get_json()
        return [(c["source"]["topic"]["code"], c["detail"]) for c in response.get_json()["cards"]]

    got = answer()
    with monkeypatch.context() as patched:
        _no_deferring(patched)
        assert answer() == got


def test_an_entry_that_cannot_be_read_is_skipped_not_a_crash():
    good = msgspec.Raw(json.dumps({"resource": {"resourceType": "Observation", "id": "ca1", "subject": {
        "reference": "Patient/p1"}}}).encode())
    deep = msgspec.Raw(b"[" * 5000 + b"]" * 5000)
    prefetch = {"o": {"resourceType": "Bundle", "entry": [good, deep, good]}}
    built = record.build_record(prefetch, today=dt.date(2026, 11, 30), patient_id="p1")
    assert built.skipped == ("Bundle/?",)


def test_values_that_are_not_objects_are_read_as_they_are(monkeypatch):
    monkeypatch.setattr(deferred, "_SMALL_VALUE_BYTES", 0)
    long = _long_request(300)["prefetch"]["observations"]
    prefetch = {"a": [1, {"b": 2}], "n": None, "s": "text", "x": 1.5, "observations": long, "t": True}
    raw = json.dumps(prefetch).encode()
    lazy = deferred.decode_prefetch(raw)
    eager = msgspec.json.decode(raw)
    assert list(lazy) == list(eager)
    assert {k: v for k, v in lazy.items() if k != "observations"} == {k: v for k, v in eager.items()
                                                                          if k != "observations"}
    entries = lazy["observations"]["entry"]
    assert all(type(e) is deferred.Deferred for e in entries)
    assert [msgspec.json.decode(e) for e in entries] == eager["observations"]["entry"]
