"""The compiled request check (jsonschema-rs) may refuse more than the
jsonschema package does, never less: a request it passes is one jsonschema
passes, so skipping jsonschema then changes no answer (a request it refuses
is answered by jsonschema, as before). Every field of each hook request is
tried with the values where regex engines and format checkers differ."""

from __future__ import annotations

import pytest

from cds_service.protocol import schemas
from requests_for_tests import hook_request

HOOKS = {"PatientViewRequest": "patient-view", "OrderSelectRequest": "order-select",
         "OrderSignRequest": "order-sign"}

# Characters where engines disagree: ASCII and C1 controls, every Unicode
# space (Python's \s is str.isspace, ECMA's is not), line and paragraph
# separators, a BOM, non-ASCII letters and digits (\d, \w), an astral one.
_CHARS = ([chr(i) for i in range(0x00, 0xA1)] + [c for c in map(chr, range(0xA1, 0x3001)) if c.isspace()]
          + ["\u00e9", "\u0660", "\uff10", "\u2028", "\u2029", "\ufeff", "\U0001F600", "\u212a"])
_TYPES = [None, True, 0, 1, 1.0, 1.5, -1, 2**70, [], {}, ["x"], {"resourceType": "Bundle"}]


def _candidates(current):
    if not isinstance(current, str):
        return _TYPES
    out = [*_TYPES, "", "\n", current + "\n", "x" * 129, "http://" + "a" * 2050, ".", "..", "0000-01-01"]
    for c in _CHARS:
        out += [c, current + c, c + current]
    return out


def _leaves(value, path=()):
    """Paths to every member and item, except inside prefetched resources
    and draft orders (the schemas read only their resourceType)."""
    if path and path[-1] == "resourceType":
        yield path
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, (*path, i))
    if path and not any(step in ("prefetch", "draftOrders") for step in path[:-1]) or (path and path[-1] in (
            "prefetch", "draftOrders", "entry", "resource") or len(path) == 2 and path[0] == "prefetch"):
        yield path


@pytest.mark.parametrize("name", schemas.FAST_CHECKED)
def test_what_the_fast_check_passes_jsonschema_passes(name):
    assert set(schemas.FAST_CHECKED) == set(HOOKS)
    body = hook_request(HOOKS[name], token="token-1", encounterId="enc-1")
    body["fhirAuthorization"]["patient"] = "pat-1"
    fast, reference = schemas.fast_validator(name), schemas.validator(name)
    assert fast.is_valid(body) and reference.is_valid(body)
    # The members every hook shares are tried on patient-view; the others' contexts on theirs.
    paths = [p for p in _leaves(body) if name == "PatientViewRequest" or p[0] == "context"]
    tried = passed = 0
    for path in paths:
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        current = parent[path[-1]]
        for value in _candidates(current):
            parent[path[-1]] = value
            tried += 1
            if fast.is_valid(body):
                passed += 1
                assert reference.is_valid(body), (path, value)
        parent[path[-1]] = current
    assert tried > 2000 and 300 < passed < tried  # the battery reached both verdicts


def test_errors_answers_as_jsonschema_on_a_refused_request():
    body = hook_request()
    body["context"]["patientId"] = "a\u0085"
    assert schemas.errors("PatientViewRequest", body) == [
        "context.patientId: must be a FHIR id: 1 to 64 letters, digits, '-' or '.', and not only dots"]
    assert schemas.errors("PatientViewRequest", hook_request()) == []
