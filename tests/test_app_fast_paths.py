"""The app's short ways through Flask give Flask's own answers."""

from __future__ import annotations

import functools
import inspect

import pytest
from flask import Flask

from cds_service.app import ServiceFlask


def plain():
    return "plain"


async def coroutine():
    return "coroutine"


def marked():
    return "marked"


if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
    marked = inspect.markcoroutinefunction(marked)


class Thing:
    def method(self):
        return "method"

    async def async_method(self):
        return "async method"


@pytest.mark.parametrize("func", [plain, coroutine, marked, functools.partial(plain), functools.partial(coroutine),
                                  Thing().method, Thing().async_method, len, Thing])
def test_ensure_sync_answers_as_flask_does(func):
    app = ServiceFlask(__name__)

    def outcome(call):
        try:
            got = call(func)
        except RuntimeError as exc:  # Flask without its async extra refuses an async function
            return ("refused", str(exc))
        return ("same", None) if got is func else ("wrapped", None)

    assert outcome(app.ensure_sync) == outcome(lambda f: Flask.ensure_sync(app, f))
    if func is plain:
        assert app.ensure_sync(func) is func
