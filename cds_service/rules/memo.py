"""Facts derived from the record, computed once per hook call instead of once per rule.

Many rules read the same derived facts (the kidney reading, the diagnosis assessment,
current therapy), and the engine's order review runs every order-sign rule again for
each suggested drug order. `engine` runs the rules inside `scope()`; there a function
decorated with `@per_call` computes its answer once per record and arguments and
returns the same answer afterwards. Outside a scope (a rule called on its own, as the
rule tests do) it simply computes, so a scope can never leak one call's answers into
another call, nor into a record built or changed later.

A record the order review builds from the chart (the same record with one draft
order, declared with `same_chart`) shares the chart's answers, so a decorated function
must not read the record's drafts (`drafts`, `judged_drafts`), directly or through what
it calls (tests/test_rules_memo.py checks every decorated function on every fixture
with drafts). Any other record, even one copied from the chart, has answers of its own.
Answers must not be changed by their callers: a list, dict or set (also one in a
tuple) is handed out as a copy. Arguments of plain types (numbers, strings, dates) are
keyed by value, others (the settings) by identity.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_PLAIN = frozenset({bool, int, float, str, bytes, dt.date, type(None)})  # keyed by value (==)
_OBJECT = object()  # marks an argument keyed by identity


class _Memo:
    def __init__(self) -> None:
        # key -> (answer, how to copy it for a caller, None for an answer handed out as it is)
        self.answers: dict[tuple[Any, ...], tuple[Any, Callable[[Any], Any] | None]] = {}
        self.charts: dict[int, Any] = {}   # id(record built from a chart) -> the chart
        # Objects keyed by identity, kept alive with the scope so that no other object
        # can take their id while it is part of a key.
        self.keep: dict[int, Any] = {}
        # The first chart and settings object a short wrapper meets in the scope (the call's
        # own, in the engine): their answers are kept by the wrapper alone, in `of_chart`
        # (fn(chart)) and `of_chart_settings` (fn(chart, settings)), and found without a key
        # to build. Held here, so neither can be freed while the scope lasts.
        self.chart: Any = None
        self.settings: Any = _OBJECT  # never a caller's settings until set
        self.of_chart: dict[Any, tuple[Any, Callable[[Any], Any] | None]] = {}
        self.of_chart_settings: dict[Any, tuple[Any, Callable[[Any], Any] | None]] = {}

    def key(self, chart: Any, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        out: list[Any] = [id(chart)]
        for part in parts:
            if type(part) in _PLAIN:
                out.append(part)
            else:
                out += (_OBJECT, id(part))
        return tuple(out)

    def answer(self, key: tuple[Any, ...], chart: Any, parts: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
        found = self.answers.get(key)
        if found is None:
            for kept in (chart, *parts):
                if type(kept) not in _PLAIN:
                    self.keep[id(kept)] = kept
            answer = compute()
            found = self.answers[key] = (answer, _copier(answer))
        return found[0] if found[1] is None else found[1](found[0])


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


_CONTAINERS = (list, dict, set)


def _copier(value: Any) -> Callable[[Any], Any] | None:
    """How a caller gets its own copy of an answer, chosen once when it is computed (a hit
    then costs one call, not a look at the answer's type): the container's own copy, or
    _copy for a tuple that holds one; None: nothing in it a caller could change."""
    kind = type(value)
    if kind in _CONTAINERS:
        return kind.copy  # type: ignore[no-any-return]
    if kind is tuple and any(type(v) in _CONTAINERS for v in value):
        return _copy
    return None


def _copy(value: Any) -> Any:
    if type(value) is tuple:  # a list, not a generator: tuple() of a list costs less
        return tuple([_copy(v) if type(v) is tuple else v.copy() if type(v) in _CONTAINERS else v for v in value])
    return value.copy() if type(value) in _CONTAINERS else value


def remembered(key: tuple[Any, ...], record: Any, compute: Callable[[], Any]) -> Any:
    """compute() once per `key` (plain values by value, other objects by identity) and
    chart of `record` within the current scope; outside a scope, every time."""
    memo = _CURRENT.get()
    if memo is None:
        return compute()
    chart = memo.charts.get(id(record), record)
    return memo.answer(memo.key(chart, key), chart, key, compute)


MARKED: list[Callable[..., Any]] = []  # every @per_call function (tests check that none reads the drafts)


def per_call(fn: F) -> F:
    """Compute fn(record, *args, **kwargs) once per call scope (see the module doc)."""
    names = [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    usual = [(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.empty) for name in ("record", "settings")]
    if names == usual:
        wrapper = _per_call_with_settings(fn)
    elif names == usual[:1]:
        wrapper = _per_call_of_record(fn)
    else:
        wrapper = _per_call_any(fn)
    MARKED.append(wrapper)
    return wrapper  # type: ignore[return-value]


# Most facts are fn(record, settings) or fn(record): their wrappers take just those
# parameters (no *args tuple, no **kwargs dict to build and test) and key them as
# _per_call_any would, so that a hit costs far less than the facts it saves, and a miss
# little more than the facts themselves.

def _per_call_with_settings(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(record: Any, settings: Any) -> Any:
        memo = _CURRENT.get()
        if memo is None:
            return fn(record, settings)
        if record is memo.chart and settings is memo.settings:
            answers = memo.of_chart_settings  # the usual case: no chart to look up, no key to build
            found = answers.get(wrapper)
            if found is None:
                answer = fn(record, settings)
                found = answers[wrapper] = (answer, _copier(answer))
            return found[0] if found[1] is None else found[1](found[0])
        chart = memo.charts.get(id(record), record) if memo.charts else record
        if memo.chart is None or (chart is memo.chart and memo.settings is _OBJECT):
            _first_chart(memo, chart, settings)
        plain = type(settings) in _PLAIN
        if chart is memo.chart and settings is memo.settings:
            answers, key = memo.of_chart_settings, wrapper
        else:
            answers = memo.answers
            key = (id(chart), wrapper, settings) if plain else (id(chart), wrapper, _OBJECT, id(settings))
        found = answers.get(key)
        if found is None:
            memo.keep[id(chart)] = chart  # `wrapper` lives as long as its module
            if not plain:
                memo.keep[id(settings)] = settings
            answer = fn(record, settings)
            found = answers[key] = (answer, _copier(answer))
        return found[0] if found[1] is None else found[1](found[0])

    return wrapper


def _first_chart(memo: _Memo, chart: Any, settings: Any = _OBJECT) -> None:
    """The scope's first chart met by a wrapper, and the first settings object (not a plain
    value) met with it: their answers go to memo.of_chart / memo.of_chart_settings, keyed
    by the wrapper alone. No answer for that chart and settings was kept before (the first
    call with them sets them)."""
    if memo.chart is None:
        memo.chart = chart
    if memo.settings is _OBJECT and chart is memo.chart and settings is not _OBJECT and type(settings) not in _PLAIN:
        memo.settings = settings


def _per_call_of_record(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(record: Any) -> Any:
        memo = _CURRENT.get()
        if memo is None:
            return fn(record)
        if record is not memo.chart:
            chart = memo.charts.get(id(record), record) if memo.charts else record
            if memo.chart is None:
                _first_chart(memo, chart)
            if chart is not memo.chart:
                key = (id(chart), wrapper)
                found = memo.answers.get(key)
                if found is None:
                    memo.keep[id(chart)] = chart
                    answer = fn(record)
                    found = memo.answers[key] = (answer, _copier(answer))
                return found[0] if found[1] is None else found[1](found[0])
        answers = memo.of_chart
        found = answers.get(wrapper)
        if found is None:
            answer = fn(record)
            found = answers[wrapper] = (answer, _copier(answer))
        return found[0] if found[1] is None else found[1](found[0])

    return wrapper


def _per_call_any(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(record: Any, *args: Any, **kwargs: Any) -> Any:
        memo = _CURRENT.get()
        if memo is None:
            return fn(record, *args, **kwargs)
        chart = memo.charts.get(id(record), record) if memo.charts else record
        if kwargs or len(args) > 1:
            parts = (wrapper, *args, *(x for item in sorted(kwargs.items()) for x in item))
            return memo.answer(memo.key(chart, parts), chart, parts, lambda: fn(record, *args, **kwargs))
        # (record) and (record, settings) as the two wrappers above key them.
        if memo.chart is None or (args and chart is memo.chart and memo.settings is _OBJECT):
            _first_chart(memo, chart, *args)
        answers = memo.answers
        if chart is memo.chart and (not args or args[0] is memo.settings):
            answers = memo.of_chart_settings if args else memo.of_chart
            key: Any = wrapper
        elif not args:
            key = (id(chart), wrapper)
        elif type(args[0]) in _PLAIN:
            key = (id(chart), wrapper, args[0])
        else:
            key = (id(chart), wrapper, _OBJECT, id(args[0]))
        found = answers.get(key)
        if found is None:
            keep = memo.keep
            keep[id(chart)] = chart
            if args and type(args[0]) not in _PLAIN:
                keep[id(args[0])] = args[0]
            answer = fn(record, *args)
            found = answers[key] = (answer, _copier(answer))
        return found[0] if found[1] is None else found[1](found[0])

    return wrapper
