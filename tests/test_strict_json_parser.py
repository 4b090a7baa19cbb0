"""The request body parser answers exactly as the strict json-module parser
does, while orjson does the common case: every body, legal or not, gets the
same value (types included) or the same 400 with the same wording, whichever
path reads it (the envelope and prefetch apart, orjson on the whole body, or
the json module). Inside the prefetch object a repeated member name is read
as its last value and an integer beyond 64 bits as a float, by every path;
outside it both stay as before (refused; exact). (The HTTP-level rules
themselves: test_robustness_traps.py.)"""

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
    undecided = lambda _raw: requests_json._UNDECIDED  # noqa: E731
    with mock.patch.object(requests_json, "_parse_split", undecided), \
            mock.patch.object(requests_json, "_parse_fast", undecided):
        return outcome(raw)


def whole_outcome(raw: bytes) -> tuple[str, str]:
    """Without the envelope/prefetch split: orjson on the whole body, else the json module."""
    with mock.patch.object(requests_json, "_parse_split", lambda _raw: requests_json._UNDECIDED):
        return outcome(raw)


def assert_same(raw: bytes) -> None:
    expected = strict_outcome(raw)
    assert outcome(raw) == expected, raw[:300]
    assert whole_outcome(raw) == expected, raw[:300]


def test_a_usual_request_takes_the_fast_path():
    raw = json.dumps(hook_request()).encode()
    assert requests_json._parse_fast(raw) == json.loads(raw)


def test_a_usual_request_is_read_as_envelope_and_prefetch_apart():
    body = hook_request()
    body["prefetch"] = body.pop("prefetch")  # last, as EHRs usually write it (else read whole)
    raw = json.dumps(body, indent=1).encode() + b"\n"
    assert requests_json._parse_split(raw) == json.loads(raw)
    assert_same(raw)


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


_PREFETCH = b'{"patient": {"resourceType": "Patient", "id": "p1"}, "obs": null}'


@pytest.mark.parametrize("raw", [
    b'{"a": 1, "a": 2}', b'{"a": {"b": 1}, "c": [{"d": 1, "d": 2}]}', b'{"a": 1, "\\u0061": 2}',
    b'{"a": 1, "a": "\\u003a"}',
    # Outside the prefetch a repeated name is refused, wherever the prefetch stands.
    b'{"context": {"patientId": "p1", "patientId": "p2"}, "prefetch": ' + _PREFETCH + b'}',
    b'{"fhirServer": "https://a.example", "prefetch": ' + _PREFETCH + b', "fhirServer": "https://b.example"}',
    b'{"prefetch": ' + _PREFETCH + b', "context": {"patientId": "p1", "patientId": "p2"}}',
    b'{"prefetch": {}, "prefetch": ' + _PREFETCH + b'}',
    b'{"prefetch": ' + _PREFETCH + b', "prefetch": {}}',
    b'{"pre\\u0066etch": {}, "prefetch": ' + _PREFETCH + b'}',
    b'{"context": {"draftOrders": {"entry": [{"resource": {"id": "a", "id": "b"}}]}}, "prefetch": {}}',
])
def test_a_repeated_member_name_is_still_refused(raw):
    kind, message = outcome(raw)
    assert kind == "error" and "a member name appears twice in one object" in message
    assert_same(raw)


@pytest.mark.parametrize("written, prefetch", [
    (b'{"p": {"id": "a", "id": "b"}}', {"p": {"id": "b"}}),
    (b'{"p": {"id": "a"}, "p": null}', {"p": None}),
    (b'{"p": [{"subject": {"reference": "Patient/1"}, "subject": {"reference": "Patient/2"}}]}',
     {"p": [{"subject": {"reference": "Patient/2"}}]}),
    (b'{"p": {"valueInteger": 123456789012345678901234}}', {"p": {"valueInteger": 123456789012345678901234}}),
    (b'{"p": [18446744073709551615, -9223372036854775809, 1]}', {"p": [18446744073709551615, -9223372036854775809, 1]}),
])
def test_inside_the_prefetch_repeated_names_keep_the_last_value_and_integers_stay_exact(written, prefetch):
    """A repeated name keeps its last value, a long integer stays exact: by every path,
    whether the prefetch comes last or not."""
    for raw in (b'{"hook": "h", "prefetch": ' + written + b"}", b'{"prefetch": ' + written + b', "hook": "h"}'):
        value = requests_json.parse_json(raw)
        assert repr(value["prefetch"]) == repr(prefetch), raw  # repr: 1.0 is not 1
        assert value["hook"] == "h"
        assert_same(raw)


def test_outside_the_prefetch_a_long_integer_stays_exact():
    raw = b'{"context": {"n": 123456789012345678901234}, "prefetch": {"p": null}}'
    assert outcome(raw) == ("value", repr({"context": {"n": 123456789012345678901234}, "prefetch": {"p": None}}))
    assert_same(raw)


@pytest.mark.parametrize("raw", [
    # Cuts that look right and are not: each is read whole, with the same answer.
    b'{"context": {"note": "prefetch"}, "prefetch": ' + _PREFETCH + b'}',
    b'{"context": {"prefetch": {"a": 1}}, "prefetch": ' + _PREFETCH + b'}',
    b'{"context": {"prefetch": {"a": 1}}}',
    b'{"x\\"prefetch": {"a": 1}}',
    b'{"context": "x\\"prefetch\\": {", "prefetch": {"a": "}"}}',
    b'{"prefetch": {"a": 1}, "b": {"c": 2}}',
    b'{"prefetch": {"a": 1}} {"b": 2}',
    b'{"prefetch": {"a": 1}}}',
    b'{"prefetch": {"a": 1}',
    b'{"prefetch" : \t{"a": 1} \n}\r\n',
    b'{"prefetch": []}', b'{"prefetch": {"a": 1}, "prefetch": []}',
    b'\xef\xbb\xbf{"hook": "h", "prefetch": {"p": {"a": 1, "a": 2}}}', '{"prefetch": {"a": 1}}'.encode("utf-16"),
    b'["prefetch", {"a": 1}]',
    b'{"a": {"prefetch": {"b": 1}}}',
    b'{"prefetch": {"a": NaN}}', b'{"prefetch": {"a": "\\ud800"}}', b'{"prefetch": {"a": 1e400}}',
    b'{"prefetch": {"a": "\xff"}}', b'{"hook": NaN, "prefetch": {"a": 1}}', b'{"hook": "\\ud800", "prefetch": {}}',
    b'{"prefetch": {"a": ' + b"[" * 150 + b"]" * 150 + b'}}',
    # Where msgspec (the prefetch's reader) stops and orjson or the json module would not, or the reverse.
    b'{"prefetch": {"a": ' + b"[" * 1010 + b"]" * 1010 + b'}}',
    b'{"prefetch": {"a": {"b": ' + b"9" * 4301 + b'}}}', b'{"prefetch": {"a": {"b": ' + b"9" * 4300 + b'}}}',
    b'{"prefetch": {"a": {"meta": 1.7976931348623157e309}}}', b'{"prefetch": {"a": {"text": "\xed\xa0\x80"}}}',
    b'{"prefetch": {"a": {"b": "\\ud83d\\ude00", "c": -0, "d": 1E+2, "e": 1e-400}}}',
    b'{"hook": ' + b"[" * 150 + b"]" * 150 + b', "prefetch": {}}',
])
def test_the_envelope_and_prefetch_cut_never_changes_the_answer(raw):
    assert_same(raw)


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
        # In and around a prefetch object, last (read apart) or not (read whole).
        for body in (f'{{"hook": {text}, "prefetch": {{"p": {variant}}}}}',
                     f'{{"prefetch": {{"p": {variant}}}, "hook": {text}}}',
                     f'{{"context": {variant}, "prefetch": {{"p": {text}}} }}',
                     f'{{"prefetch": {variant}}}'):
            assert_same(body.encode("utf-8", "surrogatepass"))
