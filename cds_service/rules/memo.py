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

_PLAIN = (bool, int, float, str, bytes, dt.date, type(None))  # keyed by value


class _Memo:
    def __init__(self) -> None:
        self.answers: dict[tuple[Any, ...], Any] = {}
        self.charts: dict[int, Any] = {}   # id(record built from a chart) -> the chart
        self.keep: dict[int, Any] = {}     # objects keyed by identity, alive while their ids are keys

    def ident(self, value: Any) -> tuple[Any, ...]:
        if isinstance(value, _PLAIN):
            return (type(value), value)  # by value (True and 1 apart)
        self.keep[id(value)] = value
        return ("id", id(value))

    def chart(self, record: Any) -> Any:
        return self.charts.get(id(record), record)


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
        chart = memo.chart(chart)
        memo.keep[id(record)] = record
        memo.charts[id(record)] = chart


def _fresh(value: Any) -> Any:
    kind = type(value)
    if kind is list or kind is dict or kind is set:
        return kind.copy(value)
    if kind is tuple and any(type(v) in (list, dict, set) for v in value):
        return tuple(_fresh(v) for v in value)
    return value


def remembered(key: tuple[Any, ...], record: Any, compute: Callable[[], Any]) -> Any:
    """compute() once per `key` (plain values or objects, by identity) and chart of
    `record` within the current scope."""
    memo = _CURRENT.get()
    if memo is None:
        return compute()
    full = (memo.ident(memo.chart(record)), *(memo.ident(k) for k in key))
    try:
        return _fresh(memo.answers[full])
    except KeyError:
        answer = memo.answers[full] = compute()
        return _fresh(answer)


def per_call(fn: F) -> F:
    """Compute fn(record, *args, **kwargs) once per call scope (see the module doc)."""

    @functools.wraps(fn)
    def wrapper(record: Any, *args: Any, **kwargs: Any) -> Any:
        memo = _CURRENT.get()
        if memo is None:
            return fn(record, *args, **kwargs)
        key = (wrapper, *args, *(x for item in sorted(kwargs.items()) for x in item))
        return remembered(key, record, lambda: fn(record, *args, **kwargs))

    return wrapper  # type: ignore[return-value]
