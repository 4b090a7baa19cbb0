"""The request body parser answers exactly as the strict json-module parser
did, while orjson does the common case: every body, legal or not, gets the
same value (types included) or the same 400 with the same wording, whichever
path reads it. (The HTTP-level rules themselves: test_robustness_traps.py.)"""

from __future__ import annotations

import json
import random
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.protocol import requests_json
from cds_service.protocol.errors import ApiError
from requests_for_tests import hook_request


def outcome(raw: bytes) -> tuple[str, str]:
    """repr of the value (tells 1 from 1.0 and -0.0 from 0.0, keeps member
    order), or the error's status, code and message."""
    try:
        return "value", repr(requests_json.parse_json(raw))
    except ApiError as exc:
        return "error", f"{exc.status} {exc.code} {exc.message}"


def strict_outcome(raw: bytes) -> tuple[str, str]:
    with mock.patch.object(requests_json, "_parse_fast", lambda _raw: requests_json._UNDECIDED):
        return outcome(raw)


def assert_same(raw: bytes) -> None:
    assert outcome(raw) == strict_outcome(raw), raw[:300]


def test_a_usual_request_takes_the_fast_path():
    raw = json.dumps(hook_request()).encode()
    assert requests_json._parse_fast(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "a": 1}',
    b'{"a": {"b": 1}, "c": [{"d": 1, "d": 2}]}',
    b'{"a": 1, "\\u0061": 2}',                      # the same name, written another way
    b'{"a": 1, "a": "\\u003a"}',                  # an escaped colon cannot make up for a lost member
    b'{"x": 12345678901234567890123}',               # beyond 64 bits: orjson would make it a float
    b'{"x": -9223372036854775809}',
    b'{"x": NaN}', b'{"x": 1e400}', b'{"x": "\\ud800"}', b'\xef\xbb\xbf{"x": 1}',
    b'{"x": 1', b'{"x": "\x01"}', b'[' * 2000 + b']' * 2000, b'{"x": "\xff"}',
    '{"x": "é"}'.encode("utf-16"),
])
def test_what_orjson_would_read_otherwise_goes_to_the_strict_parser(raw):
    assert requests_json._parse_fast(raw) is requests_json._UNDECIDED
    assert_same(raw)


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "a": 2}', b'{"a": {"b": 1}, "c": [{"d": 1, "d": 2}]}', b'{"a": 1, "\\u0061": 2}',
    b'{"a": 1, "a": "\\u003a"}',
])
def test_a_repeated_member_name_is_still_refused(raw):
    kind, message = outcome(raw)
    assert kind == "error" and "a member name appears twice in one object" in message


_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
            | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
            | st.sampled_from(["http://loinc.org", "12:30:00", 'a":b', "\\", "\ud800", "é\u2028"]))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(max_size=6) | st.sampled_from(["a", ":", "\\u003a"]), inner,
                                         max_size=4), max_leaves=25)


def _mutations(text: str, rng: random.Random) -> list[str]:
    """The value as written, then written with a member repeated, a colon or
    letter escaped, whitespace around colons, a long number, a cut."""
    out = [text]
    if '":' in text:
        i = text.index('":')
        start = text.rfind('"', 0, i) if i > 0 else -1
        if start >= 0:
            member = text[start:i + 2] + "0, "
            out.append(text[:start] + member + text[start:])  # {"k": 0, "k": ...}
    out.append(text.replace(":", "\\u003a", 1) if '"' in text else text)
    out.append(text.replace("a", "\\u0061"))
    out.append(text.replace(":", " \t:\n "))
    out.append(text.replace("0", "12345678901234567890", 1))
    out.append(text.replace("1", "1.00000000000000000000001e-3", 1))
    cut = rng.randrange(len(text) + 1)
    out.append(text[:cut])
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_values, ensure_ascii=st.booleans(), seed=st.integers(0, 2**16))
def test_both_paths_agree_on_generated_bodies(value, ensure_ascii, seed):
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    for variant in _mutations(text, random.Random(seed)):
        assert_same(variant.encode("utf-8", "surrogatepass"))
        assert_same(("{" + f'"hook": {variant}' + "}").encode("utf-8", "surrogatepass"))
