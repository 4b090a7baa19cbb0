"""Bundle entries of a long prefetch kept as their JSON text until the record
builder reads them, one at a time.

Why: a 10,000-resource chart is 8 MB of JSON and about 36 MB once parsed into
Python objects; parsed whole, all of it is alive at once, beside the body,
while the record is built, and that sets a worker's peak memory. Kept as text
(msgspec.Raw: a view of the body, no copy), an entry is parsed only when
build_record reaches it and freed once read, so a long chart never exists
whole as Python objects.

What stays the same: every value is still parsed by msgspec, as the eager
path parses it (the last of repeated names, integers exact), and nothing the
eager path refuses gets through. msgspec checks an entry's syntax when it
keeps it as text, but not two things its full parse refuses: invalid UTF-8
and numbers too large for a float (or integers of thousands of digits).
`can_defer` looks for both in the raw bytes first; a body where either could
be is read the eager way, with the eager answer. Everything above the
entries (the prefetch keys, each Bundle's other members) is parsed at once,
so the prefetch checks (resourceType, entry an array, next links, counts)
read what they read before; only an entry's content waits.
"""

from __future__ import annotations

import codecs
import re
from typing import Any

import msgspec

# Prefetch objects larger than this are read with deferred entries (about
# 1,200 resources; below it the whole chart is a few MB parsed).
DEFER_BYTES = 1 << 20

# Entry arrays shorter than this are parsed whole (short lists).
_SMALL_VALUE_BYTES = 1 << 16

Deferred = msgspec.Raw

_decode = msgspec.json.decode
# Digits written as 0, "E" as "e", signs left out: then a number whose
# exponent has three digits or more (1e309 is beyond a float) shows as "0e000".
# With two exponent digits at most, a number is below 10**(digits before the
# point + 99), so only one of 210 digits or more can be beyond a float
# (9...9e99, 210 nines); such a run shows as 200 zeros (as does an integer too
# long to read). Either may also be text inside a string (or digits joined
# where a sign was left out): then the body is only read the eager way, never
# wrongly.
_NUMBER_SHAPES = bytes.maketrans(b"123456789E", b"000000000e")
_SIGNS = b"+-"
_MAYBE_OUT_OF_RANGE = (b"0e000", b"0" * 200)
_PIECE = 1 << 20


def can_defer(raw: bytes | memoryview) -> bool:
    """True when every number in `raw` fits a float and its bytes are UTF-8:
    then keeping entries as text refuses nothing the full parse would."""
    view = memoryview(raw)
    utf8 = codecs.getincrementaldecoder("utf-8")()
    for start in range(0, len(view), _PIECE):
        # A megabyte at a time: no copy of the whole body at the worker's peak.
        piece = view[start:start + _PIECE + 300].tobytes()
        core = piece[:_PIECE]
        # An ASCII piece is skipped only when no sequence cut at the end of the
        # last piece waits for its next byte (that byte is this piece's first).
        if not core.isascii() or utf8.getstate()[0]:
            try:
                utf8.decode(core)
            except UnicodeDecodeError:
                return False
        translated = piece.translate(_NUMBER_SHAPES, _SIGNS)
        if any(pattern in translated for pattern in _MAYBE_OUT_OF_RANGE):
            return False
    try:
        utf8.decode(b"", final=True)  # a sequence cut off at the end
    except UnicodeDecodeError:
        return False
    return True


def decode_prefetch(raw: bytes | memoryview) -> dict[str, Any]:
    """The prefetch object with the entries of its long Bundles kept as text.

    Raises what msgspec raises (msgspec.MsgspecError, ValueError,
    RecursionError): the caller then reads the body the eager way."""
    try:
        # Usually every value is an object or null: its members apart, in one pass.
        values = _decode(raw, type=dict[str, dict[str, Deferred] | None])
    except msgspec.ValidationError:
        return {key: _value(value) for key, value in _decode(raw, type=dict[str, Deferred]).items()}
    return {key: None if members is None else _object(members) for key, members in values.items()}


def _value(raw: Deferred) -> Any:
    if bytes(memoryview(raw)[:1]) != b"{":
        return _decode(raw)  # not an object: the checks after the parse refuse it
    return _object(_decode(raw, type=dict[str, Deferred]))


def _object(members: dict[str, Deferred]) -> dict[str, Any]:
    """An object from its members' text: a Bundle's long entry array left as texts."""
    value = {name: _decode(member) if name != "entry" else member for name, member in members.items()}
    entry = value.get("entry")
    if entry is not None:
        deferrable = (len(entry) >= _SMALL_VALUE_BYTES and value.get("resourceType") == "Bundle"
                      and bytes(memoryview(entry)[:1]) == b"[" and not _may_name_an_alias(entry)
                      and _OUTCOME.search(entry) is None and _BUNDLE.search(entry) is None)
        value["entry"] = _decode(entry, type=list[Deferred]) if deferrable else _decode(entry)
    return value


# The record builder looks through every entry for the context Patient under a
# `urn:` fullUrl (fhir.patient_binding.patient_aliases) when a `urn:` reference
# first needs them, without reading the entries kept as text. A
# Bundle whose entries could hold one is parsed at once, so a deferred entry
# never names an alias: a fullUrl member whose value starts with "urn:" written
# plainly, or an escape of a character either could be spelled with
# (f, u, l, U, r, n, ":"; the escape of an "é" is no such). Search results from a
# FHIR server carry http(s) fullUrls; "urn:oid:" code systems are no alias.
# Likewise the prefetch checks (client.search_problem) look for an entry with
# search.mode "outcome" (a failed search) without reading the entries kept as
# text: a Bundle whose entries hold "outcome" (the mode, or a Procedure.outcome)
# or an escape of one of its letters (o, u, t, c, m, e) is parsed at once.
# And the resource limit (prefetch.count_resources) counts the entries of a Bundle
# within an entry, which it cannot do in an entry kept as text: a Bundle whose entries
# hold "Bundle" or an escape of one of its letters (B, u, n, d, l, e) is parsed at once.
# Searched in place (no copy); one escape pattern, and no alternation of literals,
# which would make re try each at every byte (about 15 times slower on 8 MB).
_BUNDLE = re.compile(rb"Bundle")
_URN_FULL_URL = re.compile(rb'"fullUrl"[ \t\r\n]*:[ \t\r\n]*"urn:')
_ESCAPED_LETTER = re.compile(rb"\\u00(?:66|75|6[cC]|55|72|6[eE]|3[aA]|6[fF]|74|63|6[dD]|65|42|64)")
_OUTCOME = re.compile(rb"outcome")


def _may_name_an_alias(text: Deferred) -> bool:
    return _URN_FULL_URL.search(text) is not None or _ESCAPED_LETTER.search(text) is not None


def decode(entry: Deferred) -> Any:
    """A deferred entry parsed (msgspec's errors propagate: RecursionError on
    an entry nested past Python's limit)."""
    return _decode(entry)
