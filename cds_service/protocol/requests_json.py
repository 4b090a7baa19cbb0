"""Reading a JSON request body the strict way: right media type, valid JSON, an object.

Strict beyond the json module's defaults, because every byte is
attacker-controlled until proven otherwise:
- a Content-Encoding (gzip, ...) is refused (415), never decompressed, so no
  decompression bomb can get past the body size limit;
- a streamed (chunked) body is refused at the size limit rather than
  silently cut there;
- NaN, Infinity and numbers too large for a float are not JSON (RFC 8259);
- a member name given twice in one object is refused outside the prefetch:
  two parsers could read the body differently, and a validator could check
  one value while the service uses the other (patientId, fhirServer, the
  token). Inside the prefetch (its keys and the FHIR data under them) a
  repeated name is read as its last value, and an integer beyond 64 bits
  exactly, by every path: nothing else acts on that data, every check on it
  (patient binding, plausibility, prefetch checks) reads the value the
  record then uses, and proving no name repeats there cost as much as
  parsing it (see _parse_split);
- a string with an unpaired surrogate ("\\ud800" is valid JSON syntax but not
  text) is refused: no database, log or encoder downstream could take it;
- nesting deeper than MAX_DEPTH is refused (400), both because Python's json
  raises RecursionError on very deep input and because every later recursive
  step (schema validation, card rendering of drafts) would risk the same.
The last two checks walk the body except the prefetched FHIR data (see
_without_prefetch for why that is safe and what it saves).

How, cheaply: orjson (C) parses first; it already refuses NaN, Infinity,
numbers beyond a float, unpaired surrogates and invalid UTF-8. What it would
let through differently is sent to the strict parser below (the json module
with checking hooks, about 4x slower): a repeated member name (found by
counting, see _members_lost), an integer beyond 64 bits (orjson makes it a
float; the json module keeps it exact), and any body orjson refuses, so the
answer and its wording are the strict parser's in every case. When the
prefetch is the body's last member (the usual order), the envelope and the
prefetch are read apart (_parse_split): only the envelope, a few hundred
bytes, is counted and scanned.
"""

from __future__ import annotations

import gc
import json
import math
import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson
from flask import Request, current_app

from cds_service.fhir import deferred
from cds_service.protocol import gc_pause
from cds_service.protocol.errors import ApiError

# WSGI environ key under which the production server (gunicorn_worker.RequestGate)
# leaves the whole body it received, so that it is not copied again here.
RECEIVED_BODY = "cds_service.received_body"

# A FHIR Bundle in a prefetch key sits ~12 levels deep at its deepest
# (body > prefetch > Bundle > entry > resource > component > code > coding > extension...);
# 100 leaves plenty of room for contained resources and extensions.
MAX_DEPTH = 100


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not allowed in JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotJson("a number is too large")
    return value


_REPEATED = "a member name appears twice in one object"

_SURROGATE = re.compile("[\ud800-\udfff]")


def tree_problem(value: Any, max_depth: int = MAX_DEPTH) -> str | None:
    """Why a parsed JSON value is not acceptable, or None (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "a string holds an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text"
            continue
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return f"arrays or objects nest more than {max_depth} levels deep"
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, str)))
    return None


def _without_prefetch(body: Any) -> Any:
    """The body minus the prefetched FHIR data, for the tree check.

    Walking every node of a long chart costs several times the parse itself
    (23 ms for 1000 resources), and the prefetch needs no such check: the
    record builder reads fixed paths (no recursion into arbitrary depth), and
    no prefetched string is ever stored or logged, so an unpaired surrogate
    there harms nothing. Everything that is stored, logged or recursed into
    (hookInstance, context, draftOrders, feedback) is still checked."""
    if isinstance(body, dict) and isinstance(body.get("prefetch"), dict):
        return {**{k: v for k, v in body.items() if k != "prefetch"}, "prefetch": list(body["prefetch"])}
    return body


def parse_json(raw: bytes) -> Any:
    """Parse strictly (see the module docstring); raise ApiError 400."""
    body = _parse_split(raw)
    if body is _UNDECIDED:
        body = _parse_fast(raw)
    if body is _UNDECIDED:
        body = _parse_strict(raw)
    problem = tree_problem(_without_prefetch(body))
    if problem:
        raise ApiError(400, f"the request body is not acceptable JSON: {problem}", code="invalid_json")
    return body


_UNDECIDED = object()
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")


def _parse_fast(raw: bytes) -> Any:
    """orjson's reading when it is certainly the strict parser's, else _UNDECIDED."""
    if _long_digit_run(raw):
        return _UNDECIDED  # maybe an integer beyond 64 bits (or just a long digit run in a string)
    try:
        body = _loads_without_gc(raw, orjson.loads)
    except orjson.JSONDecodeError:
        return _UNDECIDED  # not JSON, or not orjson's: the strict parser words the answer
    return _UNDECIDED if _members_lost(raw, body) else body


_JSON_SPACE = b" \t\r\n"


def _parse_split(raw: bytes) -> Any:
    """The body read as envelope and prefetch apart, when the prefetch object is its
    last member; else _UNDECIDED (and the whole body is read as one).

    The envelope is the body with the prefetch object replaced by `{}`: a few
    hundred bytes, read with every check (_parse_fast, else _parse_strict). The
    prefetch object is read by msgspec alone (the last of repeated names,
    integers exact, the rest as orjson reads it; straight from the bytes, where
    orjson first builds a document of its own: 17 MB at 10,000 resources): no
    duplicate-member count and no digit scan over it (at 1000 resources they
    cost about as much as the parse), see the module docstring for why that
    data needs neither.

    Why the cut is right whatever the bytes: `head + b"{}" + tail`, with
    `tail` only white space and one "}", can be valid JSON only if that `{}`
    is a value (a "{" inside a string would leave the string open, and
    nothing after it can close one) and the value of the last member of the
    top-level object (the "}" closes it, then the body ends). If that
    member's name is "prefetch" (no repeated names: the envelope is strict)
    and `raw[start:end]` is one JSON value, the body is the envelope with that
    value in place of the `{}`. Any other cut fails one of these checks and
    the body is read whole, with the same answer."""
    close = _skip_space_back(raw, len(raw)) - 1   # the body's last "}"
    end = _skip_space_back(raw, close) if close > 0 and raw[close] == 0x7D else 0
    name = raw.find(b'"prefetch"')
    colon = _skip_space(raw, name + 10) if name >= 0 else 0
    start = _skip_space(raw, colon + 1)
    if not (0 < colon < start < end and raw[colon] == 0x3A and raw[start] == 0x7B and raw[end - 1] == 0x7D):
        return _UNDECIDED  # ":", "{", "}"
    envelope = raw[:start] + b"{}" + raw[end:]
    try:
        body = _parse_fast(envelope)
        if body is _UNDECIDED:
            body = _parse_strict(envelope)
    except ApiError:
        return _UNDECIDED  # not JSON, or not cut here: the whole body words the answer
    if not isinstance(body, dict) or next(reversed(body), None) != "prefetch" or body["prefetch"] != {}:
        return _UNDECIDED
    view = memoryview(raw)[start:end]
    try:
        prefetch = _loads_without_gc(view, _prefetch_reader(view))
    except (msgspec.MsgspecError, ValueError, RecursionError):
        # msgspec.DecodeError (not JSON), ValidationError (a number beyond a float, or an
        # integer of more than 4300 digits), UnicodeDecodeError; nesting past Python's limit
        return _UNDECIDED
    if not isinstance(prefetch, dict):
        return _UNDECIDED
    body["prefetch"] = prefetch
    return body


class NotFhirJson(ValueError):
    """A FHIR server's reply cannot be read as FHIR data; the message says what it sent
    ("sent something that is not JSON")."""


def parse_fhir_reply(raw: bytes) -> Any:
    """A FHIR server's reply (fhir/client.py), read as the prefetch of a request
    body is read (_parse_split): by msgspec, the last of repeated names, integers
    exact; NaN, Infinity, numbers beyond a float, invalid UTF-8 and unpaired
    surrogates refused, and so is nesting deeper than the interpreter's recursion
    limit (about 1000 levels), which the json module met as an uncaught
    RecursionError. Fetched and sent data are then read alike, and nothing is
    walked (a tree check of every node would cost ~20 times the parse)."""
    try:
        return _loads_without_gc(raw, msgspec.json.decode)
    except RecursionError:
        raise NotFhirJson("sent JSON that nests arrays or objects too deeply") from None
    except msgspec.ValidationError:
        raise NotFhirJson("sent JSON that holds a number beyond a float") from None
    except (msgspec.MsgspecError, ValueError):
        raise NotFhirJson("sent something that is not JSON") from None


def _prefetch_reader(view: memoryview) -> Callable[[memoryview], Any]:
    """How the prefetch object is read: a long one with its Bundle entries
    left as text until the record builder reads each (fhir.deferred), when
    nothing in it could be refused by the full parse; else whole."""
    if len(view) > deferred.DEFER_BYTES and deferred.can_defer(view):
        return deferred.decode_prefetch
    return msgspec.json.decode


def _skip_space(raw: bytes, at: int) -> int:
    """The first index from `at` that is not JSON white space (len(raw) if none)."""
    while at < len(raw) and raw[at] in _JSON_SPACE:
        at += 1
    return at


def _skip_space_back(raw: bytes, end: int) -> int:
    """`end` moved back over JSON white space (no copy of a long body, as rstrip makes)."""
    while end > 0 and raw[end - 1] in _JSON_SPACE:
        end -= 1
    return end


def _long_digit_run(raw: bytes, piece: int = 1 << 20) -> bool:
    """19 digits in a row anywhere, looked for a megabyte at a time (a copy
    of a long chart at once would be 8 MB more at the worker's peak)."""
    run = b"0" * 19
    return any(run in raw[start:start + piece + 18].translate(_DIGITS_AS_ZERO)
               for start in range(0, len(raw), piece))


def _members_lost(raw: bytes, body: Any) -> bool:
    """Did the parse drop members, i.e. does some object repeat a name?

    Counted, not walked: every member has exactly one ":" outside strings, and
    inside strings a ":" is written as itself or as \\u003a. Without that
    escape, the colons of `raw` are its members plus the colons in its
    strings; re-written by orjson (which never escapes ":"), the parsed body
    has its own members plus the colons in the strings it kept. A repeated
    name loses at least one member and never adds a colon, so equal counts
    mean nothing was lost (about 0.1 ms per 100 kB, against a Python call per
    object in the strict parser)."""
    if b"\\u003" in raw and (b"\\u003a" in raw or b"\\u003A" in raw):
        return True  # undecided: let the strict parser count
    # In pieces (body > prefetch > Bundle > entry) only where a whole copy would weigh.
    kept = _colons(body, levels=4 if len(raw) > 1 << 20 else 0)
    return kept is None or raw.count(b":") != kept


def _colons(value: Any, levels: int) -> int | None:
    """The colons of `value` written by orjson, written in pieces (a member
    at a time for the top `levels` levels, long arrays _SLICE items at a
    time), so a 10,000-resource body is never held written out whole; None
    past orjson's nesting limit."""
    if levels and isinstance(value, dict):
        total = 0
        for key, item in value.items():
            inner = _colons(item, levels - 1)
            if inner is None:
                return None
            total += key.count(":") + 1 + inner
        return total
    if levels and isinstance(value, list) and len(value) > _SLICE:
        total = 0
        for start in range(0, len(value), _SLICE):
            inner = _colons(value[start:start + _SLICE], 0)
            if inner is None:
                return None
            total += inner
        return total
    try:
        return orjson.dumps(value).count(b":")
    except orjson.JSONEncodeError:  # nested beyond orjson's writer (254 levels)
        return None


_SLICE = 256


def _repeats_outside_prefetch(body: Any, repeated: set[int]) -> bool:
    """Is one of the `repeated` objects (by id) outside the prefetch object?"""
    if id(body) in repeated:
        return True
    stack = [_without_prefetch(body)]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if id(item) in repeated:
                return True
            stack.extend(v for v in item.values() if isinstance(v, (dict, list)))
        elif isinstance(item, list):
            stack.extend(v for v in item if isinstance(v, (dict, list)))
    return False


def _parse_strict(raw: bytes) -> Any:
    repeated: list[dict[str, Any]] = []  # objects that lost a member to a repeated name

    def members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)  # built in C; a repeated name shows as a shorter dict
        if len(out) != len(pairs):
            repeated.append(out)
        return out

    try:
        body = _loads_without_gc(raw, lambda text: json.loads(text, parse_constant=_no_constant,
                                                              parse_float=_finite_float,
                                                              object_pairs_hook=members))
        if repeated and _repeats_outside_prefetch(body, {id(d) for d in repeated}):
            raise _NotJson(_REPEATED)
        return body
    except RecursionError:
        raise ApiError(400, f"the request body nests arrays or objects more than {MAX_DEPTH} levels deep",
                       code="invalid_json") from None
    except _NotJson as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        # Also int() refusing a number of more than 4300 digits.
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ApiError(400, f"the request body is not valid JSON{where}", code="invalid_json") from None


def read_json_object(request: Request) -> dict[str, Any]:
    mimetype = (request.mimetype or "").lower()
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        raise ApiError(415, "the body must be JSON, sent with Content-Type: application/json",
                       details={"contentType": request.content_type or "(none)"})
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding != "identity":
        raise ApiError(415, "compressed request bodies (Content-Encoding) are not accepted; send plain JSON",
                       code="unsupported_content_encoding")
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    raw = _received_body(request, limit)
    if raw is None:
        raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH this raises 413
    if request.content_length is None and limit is not None and len(raw) >= limit:
        # A streamed body is cut at the limit by Werkzeug, not refused: refuse it here.
        raise ApiError(413, body_too_large_message(limit), code="payload_too_large")
    if not raw.strip():
        raise ApiError(400, "the request body is empty; a JSON object is expected", code="invalid_json")
    gc_pause.hold(request)  # until the request ends (gc_pause: the parsed chart has no cycles)
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def _received_body(request: Request, limit: int | None) -> bytes | None:
    """The body the server already received whole (Content-Length met), or None."""
    body = request.environ.get(RECEIVED_BODY)
    if not isinstance(body, bytes) or request.content_length != len(body) or (limit is not None and len(body) > limit):
        return None
    return body


def _loads_without_gc(raw: bytes, loads: Callable[[bytes], Any]) -> Any:
    """loads(raw) with the cyclic garbage collector paused. Parsing a long
    chart makes hundreds of thousands of containers, each growth of which
    triggers collections that rescan the whole partial result (a 10000-resource
    body parsed about twice as slowly); parsed JSON holds no reference cycles,
    so there is nothing for them to find. The collector is global: another
    thread may turn it back on early (only slower, never wrong), and it is
    left off if it was off before."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return loads(raw)
    finally:
        if was_enabled:
            gc.enable()


def body_too_large_message(limit: int | None) -> str:
    """The 413 text, naming the limit (CDS_MAX_BODY_BYTES) so an integrator knows what to send."""
    return (f"request body too large: at most {limit} bytes (CDS_MAX_BODY_BYTES)" if limit
            else "request body too large")
