"""benchmarks/callgrind_calls.py keeps working: its counted process makes the
calls and wraps the part asked for in operator.call (what callgrind counts).
Valgrind itself is not run here (slow, and not installed everywhere)."""

from __future__ import annotations

import operator

import pytest

from benchmarks import callgrind_calls


@pytest.fixture
def counted_calls(monkeypatch):
    calls = []
    real = operator.call

    def call(fn, *args, **kwargs):
        calls.append(getattr(fn, "__name__", repr(fn)))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(operator, "call", call)
    return calls


@pytest.mark.parametrize("part, counted", [
    (None, ["measured"]),
    ("view", ["call_service"] * 2),
    ("body-free", ["clear"] * 2),
    ("cds_service.store:Store.quiet_marks", ["quiet_marks"] * 2),
])
def test_child_counts_only_the_part(part, counted, counted_calls, monkeypatch):
    from cds_service.protocol import requests_json
    from cds_service.store import Store

    # What the child patches, put back after the test.
    monkeypatch.setattr(Store, "quiet_marks", Store.quiet_marks)
    monkeypatch.setattr(requests_json, "parse_json", requests_json.parse_json)
    callgrind_calls.child(size=5, warm=2, calls=2, part=part)
    assert counted_calls == counted
