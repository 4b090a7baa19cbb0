"""Facts derived from the record, computed once per hook call instead of once per rule.

Many rules read the same derived facts (the kidney reading, the diagnosis assessment,
current therapy), and the engine's order review runs every order-sign rule again for
each suggested drug order. `engine` runs the rules inside `scope()`; there a function
decorated with `@per_call` computes its answer once per record and arguments and
returns the same answer afterwards. Outside a scope (a rule called on its own, as the
rule tests do) it simply computes, so a scope can never leak one call's answers into
another call, nor into a record built or changed later.

A record the order review builds from the chart (the same record with one draft
order: `chart_of`) shares the chart's answers, so a decorated function must not read
the record's drafts (`drafts`, `judged_drafts`), directly or through what it calls.
Answers must not be changed by their callers: a list, dict or set (also one in a
tuple) is handed out as a copy.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_PLAIN = frozenset({bool, int, float, str, bytes, dt.date, type(None)})  # keyed by value (==)
_OBJECT = object()  # marks an argument keyed by identity


class _Memo:
    def __init__(self) -> None:
        self.answers: dict[tuple[Any, ...], tuple[Any, bool]] = {}  # key -> (answer, hand out copies)
        self.charts: dict[int, Any] = {}   # id(record built from a chart) -> the chart
        self.keep: dict[int, Any] = {}     # objects keyed by identity, alive while their ids may be keys

    def key(self, record: Any, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        chart = self.charts.get(id(record), record)
        keep = self.keep
        keep[id(chart)] = chart
        out = [id(chart)]
        for part in parts:
            if type(part) in _PLAIN:
                out.append(part)
            else:
                keep[id(part)] = part
                out += (_OBJECT, id(part))
        return tuple(out)


_CURRENT: contextvars.ContextVar[_Memo | None] = contextvars.ContextVar("facts_memo", default=None)


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Derived facts are computed once within this block (nested blocks share it)."""
    if _CURRENT.get() is not None:
        yield
        return
    token = _CURRENT.set(_Memo())
    try:
        yield
    finally:
        _CURRENT.reset(token)


def same_chart(record: Any, chart: Any) -> None:
    """`record` is `chart` with other draft orders: it shares the chart's answers."""
    memo = _CURRENT.get()
    if memo is not None:
        memo.keep[id(record)] = record
        memo.charts[id(record)] = memo.charts.get(id(chart), chart)


def _mutable(value: Any) -> bool:
    kind = type(value)
    return kind in (list, dict, set) or (kind is tuple and any(type(v) in (list, dict, set) for v in value))


def _copy(value: Any) -> Any:
    if type(value) is tuple:
        return tuple(_copy(v) for v in value)
    return value.copy() if type(value) in (list, dict, set) else value


def remembered(key: tuple[Any, ...], record: Any, compute: Callable[[], Any]) -> Any:
    """compute() once per `key` (plain values by value, other objects by identity) and
    chart of `record` within the current scope; outside a scope, every time."""
    memo = _CURRENT.get()
    if memo is None:
        return compute()
    full = memo.key(record, key)
    found = memo.answers.get(full)
    if found is None:
        answer = compute()
        found = memo.answers[full] = (answer, _mutable(answer))
    return _copy(found[0]) if found[1] else found[0]


MARKED: list[Callable[..., Any]] = []  # every @per_call function (tests check that none reads the drafts)


def per_call(fn: F) -> F:
    """Compute fn(record, *args, **kwargs) once per call scope (see the module doc)."""

    @functools.wraps(fn)
    def wrapper(record: Any, *args: Any, **kwargs: Any) -> Any:
        if _CURRENT.get() is None:
            return fn(record, *args, **kwargs)
        parts = (wrapper, *args, *(x for item in sorted(kwargs.items()) for x in item)) if kwargs else (wrapper, *args)
        return remembered(parts, record, lambda: fn(record, *args, **kwargs))

    MARKED.append(wrapper)
    return wrapper  # type: ignore[return-value]
