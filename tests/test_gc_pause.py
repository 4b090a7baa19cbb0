"""The garbage collector is paused from a request's JSON parse until the request
ends (cds_service.protocol.gc_pause), and never left off by a request."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest

from cds_service.protocol import gc_pause
from cds_service.services import clinical
from tests.requests_for_tests import hook_request

PV = "/cds-services/osteoporosis-patient-view"


@pytest.fixture(autouse=True)
def collector_on():
    assert gc.isenabled() and gc_pause.holders() == 0
    yield
    assert gc_pause.holders() == 0
    gc.enable()


def _watch_build_record(monkeypatch):
    """Record whether the collector runs while the chart is read."""
    seen = []
    real = clinical.build_record

    def watched(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(clinical, "build_record", watched)
    return seen


def test_paused_while_the_chart_is_read_and_on_again_after(client, monkeypatch):
    seen = _watch_build_record(monkeypatch)
    resp = client.post(PV, json=hook_request())
    assert resp.status_code == 200
    assert seen == [False]
    assert gc.isenabled()


def test_on_again_after_a_refused_body(client):
    resp = client.post(PV, data=b"[1, 2]", content_type="application/json")
    assert resp.status_code == 400
    assert gc.isenabled()


def test_on_again_after_a_crash(make_app, monkeypatch):
    app = make_app()
    app.testing = False  # the 500 handler answers, as in production

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(clinical, "build_record", broken)
    resp = app.test_client().post(PV, json=hook_request())
    assert resp.status_code == 500
    assert gc.isenabled()


def test_left_off_when_it_was_off_before(client):
    gc.disable()
    resp = client.post(PV, json=hook_request())
    assert resp.status_code == 200
    assert not gc.isenabled()


def _request():
    return SimpleNamespace(environ={})


def test_overlapping_requests_restart_it_when_the_last_one_ends():
    first, second = _request(), _request()
    gc_pause.hold(first)
    gc_pause.hold(second)
    gc_pause.hold(second)  # once per request
    assert gc_pause.holders() == 2 and not gc.isenabled()
    gc_pause.release(first)
    assert not gc.isenabled()
    gc_pause.release(second)
    gc_pause.release(second)  # nothing held any more: no effect
    assert gc_pause.holders() == 0 and gc.isenabled()


def test_requests_that_always_overlap_still_get_young_collections():
    collections = []

    def count(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    long_one = _request()
    gc_pause.hold(long_one)
    gc.callbacks.append(count)
    try:
        for _ in range(2 * gc_pause.VALVE):
            short = _request()
            gc_pause.hold(short)
            gc_pause.release(short)
    finally:
        gc.callbacks.remove(count)
        gc_pause.release(long_one)
    assert collections == [0, 0]
