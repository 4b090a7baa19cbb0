"""Deep copies of plain JSON data (dicts, lists, str, int, float, bool, None) made by
orjson: written and read back in C, several times faster than copy.deepcopy's walk
over a card or an order. Anything else (a tuple, a subclass, a date, a dataclass) is
refused, or shows as a copy that is not equal, and the caller copies its own way."""

from __future__ import annotations

from typing import Any

import orjson

NOT_COPIED = object()
# Refuse, rather than convert, what plain JSON does not hold.
_PLAIN_ONLY = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS


def json_copy(tree: Any) -> Any:
    """An equal deep copy of `tree`, or NOT_COPIED when it is not plain JSON data."""
    text = plain_json(tree)
    if text is None:
        return NOT_COPIED
    copied = orjson.loads(text)
    return copied if copied == tree else NOT_COPIED


def plain_json(tree: Any) -> bytes | None:
    """`tree`'s compact JSON, or None when it holds what plain JSON does not
    (a tuple is written as an array, a NaN as null: the caller checks for that)."""
    try:
        return orjson.dumps(tree, option=_PLAIN_ONLY)
    except TypeError:
        return None
