"""The cyclic garbage collector paused from a request's JSON parse until the
request ends.

A parsed chart is many new containers (about 15,000 at 1000 resources, 150,000
at 10,000) with no reference cycles, and build_record and the rules add more.
The first young collection after the parse scans them all, and so does each
later one the call triggers: about 1 ms of a 23 ms call at 1000 resources
(py-spy; `gc.callbacks`). Reference counting frees them when the call ends,
so those scans find nothing. The collector is global and a worker runs
several requests at once: it stays paused while any request holds a pause
and restarts when the last one ends. Requests that keep overlapping could
keep it off for good, so every VALVE-th request end under a pause runs a
young collection anyway. If something else had turned the collector off, it
is left off.
"""

from __future__ import annotations

import gc
import threading

from flask import Request

VALVE = 64
_HELD = "cds_service.gc_held"  # WSGI environ key: this request holds a pause

_lock = threading.Lock()
_holders = 0
_restart = False  # whether the pause turned the collector off (and so turns it on again)
_ends_under_pause = 0


def hold(request: Request) -> None:
    """Pause the collector until `release(request)` (once per request)."""
    global _holders, _restart
    if request.environ.get(_HELD):
        return
    request.environ[_HELD] = True
    with _lock:
        if _holders == 0:
            _restart = gc.isenabled()
            gc.disable()
        _holders += 1


def release(request: Request) -> None:
    """End the request's pause, if it holds one (Flask's teardown: always runs)."""
    global _holders, _ends_under_pause
    if not request.environ.pop(_HELD, False):
        return
    with _lock:
        _holders -= 1
        if _holders == 0:
            _ends_under_pause = 0
            if _restart:
                gc.enable()
            return
        _ends_under_pause += 1
        valve = _ends_under_pause >= VALVE
        if valve:
            _ends_under_pause = 0
    if valve:
        gc.collect(0)


def holders() -> int:
    """Requests holding a pause now (tests, diagnostics)."""
    return _holders
