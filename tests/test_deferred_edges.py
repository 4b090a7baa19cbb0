"""Edge cases of the deferred prefetch read (cds_service.fhir.deferred): each gives
what the eager read gives, the same record or the same 400."""

from __future__ import annotations

import copy
import json

import msgspec
import pytest

from cds_service.fhir import deferred
from tests.test_deferred_entries import _answered_alike, _long_request, _record, _same, _with_value


def _prefetch_with(entries: dict[int, str], n: int = 200) -> tuple[bytes, str]:
    """The prefetch of a chart of `n` resources with raw entry texts put into
    prefetch.observations.entry at the given places."""
    body = _long_request(n)
    observations = body["prefetch"]["observations"]["entry"]
    for at in sorted(entries):
        observations.insert(at, f"@@{at}@@")
    raw = json.dumps(body["prefetch"]).encode()
    for at, text in entries.items():
        raw = raw.replace(f'"@@{at}@@"'.encode(), text.encode())
    return raw, body["context"]["patientId"]


_NESTED_OBSERVATION = ('{"resource": {"resourceType": "Bundle", "entry": [%s, %s]}}'
                       % (json.dumps(_long_request(1)["prefetch"]["observations"]["entry"][0]), "%s"))


@pytest.mark.parametrize("fault", [
    '{"resource": {"resourceType": "Observation", "id": "s"}, "search": "match"}',  # search not an object
    '{"resource": {"resourceType": "Observation", "id": "s"}, "search": [1]}',
    '{"resource": {"resourceType": "Bundle", "entry": 5}}',  # a nested Bundle's entry not a list
    _NESTED_OBSERVATION % '{"resource": {"resourceType": "Condition"}, "search": true}',  # fault after a read
])
def test_a_malformed_entry_ends_its_bundle_as_the_eager_read_does(fault, monkeypatch):
    """The eager read stops a prefetch value at an entry it cannot walk (the entries
    before it kept, "Bundle/?" counted first); an entry read from its text must too,
    or the records differ (here: every later DXA and lab kept, or not)."""
    monkeypatch.setattr(deferred, "_SMALL_VALUE_BYTES", 0)
    raw, pid = _prefetch_with({2: '"not an entry"', 40: fault})
    lazy = deferred.decode_prefetch(raw)
    # A Bundle within an entry keeps its Bundle's entries parsed (prefetch.count_resources counts its entries).
    assert (type(lazy["observations"]["entry"][40]) is deferred.Deferred) == ("Bundle" not in fault)
    eager = _record(msgspec.json.decode(raw), pid)
    assert eager.skipped[0] == "Bundle/?" and "?/?" in eager.skipped
    _same(_record(lazy, pid), eager, fault)


@pytest.mark.parametrize("text", [b"9" * 210 + b"e99", b"-" + b"1" * 250 + b".5E+90", b"2" * 299 + b"e10"])
def test_a_number_beyond_a_float_with_a_two_digit_exponent_is_refused_alike(text, monkeypatch):
    """Beyond a float with neither a three-digit exponent nor 300 digits: 210
    digits before the point are enough with e99. The eager read refuses it (400);
    the body must not be let through with the entry read later as unreadable."""
    got = _answered_alike(_with_value(text), monkeypatch)
    assert got[0] == "error" and got[1].startswith("400 invalid_json"), got


def test_invalid_utf8_either_side_of_an_ascii_megabyte_is_refused_alike(monkeypatch):
    """can_defer checks the bytes a megabyte at a time and skips an ASCII piece:
    a sequence cut at the end of one piece must still be checked against the next
    byte, not against the first non-ASCII byte two pieces on (here "\\xc3" + "a",
    invalid, then a lone "\\xa9", which together would read as "é")."""
    body = _long_request(1)
    entry = copy.deepcopy(body["prefetch"]["observations"]["entry"][0])
    entry["resource"]["note"] = [{"text": "a" * (5 << 19)}]
    body["prefetch"]["observations"]["entry"].insert(0, entry)
    raw = bytearray(json.dumps(body).encode())
    start = raw.index(b"{", raw.index(b'"prefetch"'))
    piece = 1 << 20
    assert raw[start + piece - 1:start + 2 * piece + 1] == b"a" * (piece + 2)  # inside the note
    raw[start + piece - 1], raw[start + 2 * piece] = 0xC3, 0xA9
    got = _answered_alike(bytes(raw), monkeypatch, start)
    assert got[0] == "error" and got[1].startswith("400 invalid_json"), got


def test_a_bundle_completed_from_the_server_is_counted_once_when_both_pages_fail(monkeypatch):
    """A long first page (entries as text) and a fetched page (parsed) merged in one
    Bundle, as FhirClient.rest_of merges them, each with a malformed entry: the eager
    read stops at the first and counts the value once ("Bundle/?"); so must the
    deferred one. A later value that fails at its first entry is still counted."""
    monkeypatch.setattr(deferred, "_SMALL_VALUE_BYTES", 0)
    raw, pid = _prefetch_with({10: '{"resource": {"resourceType": "Observation"}, "search": "x"}'})
    lazy = deferred.decode_prefetch(raw)
    eager = msgspec.json.decode(raw)
    fetched = [{"resource": {"resourceType": "Observation"}, "search": "y"}]
    failing = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Condition"}, "search": 1}]}
    for prefetch in (lazy, eager):
        prefetch["observations"]["entry"] += copy.deepcopy(fetched)
        prefetch["zz"] = copy.deepcopy(failing)
    want = _record(eager, pid)
    assert want.skipped[:2] == ("Bundle/?", "Bundle/?") and want.skipped.count("Bundle/?") == 2
    _same(_record(lazy, pid), want, "two pages")
