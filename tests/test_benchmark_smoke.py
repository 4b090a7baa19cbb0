"""The benchmark script keeps working: a smoke run with tiny sizes, in-process
and over HTTP through the production server (a few seconds). No timing is
asserted: numbers depend on the machine; only that each part ran and answered."""

from __future__ import annotations

import json

from benchmarks import run


def test_benchmark_smoke_run(tmp_path, capsys):
    out = tmp_path / "results.json"
    results = run.main(["--smoke", "--loadgen", "python", "--out", str(out)])

    saved = json.loads(out.read_text())
    assert saved["bodies"] == results["bodies"]
    assert set(saved["in_process"]) == {"5", "20"}
    for size in ("5", "20"):
        inproc = saved["in_process"][size]
        assert inproc["service"]["n"] >= 3 and inproc["bare_flask"]["n"] >= 3
        assert inproc["cards"], "the synthetic patient should get cards from the current rules"
        http = saved["http"]["results"][size]
        for app in ("service", "bare"):
            assert http[app]["requests"] > 0
            assert http[app]["errors"] == 0
            assert http[app]["cpu_ms_per_request"]["median"] > 0
    assert saved["http"]["service_peak_rss_mb"] > 0
    table = capsys.readouterr().out
    assert "| resources |" in table and "Peak RSS per worker" in table


def test_generated_request_has_requested_size():
    from benchmarks.generate import patient_view_request, resource_count
    from cds_service.services.prefetch_templates import PREFETCH

    for n in (0, 7, 100):
        body = patient_view_request(n)
        assert resource_count(body) == n
        assert body["prefetch"]["patient"]["id"] == body["context"]["patientId"]
        # Every key answered, as an EHR does: nothing left for the service to fetch or log.
        assert set(body["prefetch"]) == set(PREFETCH)
