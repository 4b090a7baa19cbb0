"""Card burden on the real-world corpus: every chart of
fhir_fixtures/realworld/<corpus> through patient-view (prefetch path, the
prefetch filled by running the discovery templates over the chart), then
cards per chart open by age band and the share of chart opens per card id.

    .venv/bin/python -m benchmarks.realworld_cards            # markdown tables
    .venv/bin/python -m benchmarks.realworld_cards --json     # the raw figures

Ages are on the (shifted) chart-open date; deceased patients are counted in
their own row (they should get no cards).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

BANDS = ((50, 64), (65, 74), (75, 84), (85, 200))


def _band(age: int) -> str:
    for low, high in BANDS:
        if low <= age <= high:
            return f"{low}+" if high == 200 else f"{low}-{high}"
    return "<50"


def _age(birth: str, on: dt.date) -> int:
    b = dt.date.fromisoformat(birth[:10])
    return on.year - b.year - ((on.month, on.day) < (b.month, b.day))


def measure(corpus: str = "synthea") -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from fhir_test_server import FhirStore

    from cds_service import fixtures as fx
    from cds_service.app import create_app
    from cds_service.fhir.prefetch import render_template
    from cds_service.services.prefetch_templates import PREFETCH

    today = dt.date.today()
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp}/cds.db", "CDS_AUTH_REQUIRED": "false",
                          "CDS_PATIENT_HASH_SECRET": "realworld-burden-patient-hash-secret-0123",
                          "CDS_LOG_LEVEL": "ERROR"})
        client = app.test_client()
        rows = []
        for path in fx.realworld_paths(corpus):
            resources = fx.load_realworld(path, today=today)
            patient = next(r for r in resources if r["resourceType"] == "Patient")
            store = FhirStore(resources)
            prefetch = {key: store.answer(render_template(t, {"patientId": patient["id"]}))
                        for key, t in PREFETCH.items()}
            resp = client.post("/cds-services/osteoporosis-patient-view", json={
                "hookInstance": str(uuid.uuid4()), "hook": "patient-view",
                "context": {"patientId": patient["id"], "userId": "Practitioner/example"}, "prefetch": prefetch})
            cards = resp.get_json().get("cards", []) if resp.status_code == 200 else []
            deceased = bool(patient.get("deceasedBoolean") or patient.get("deceasedDateTime"))
            rows.append({"file": path.name, "status": resp.status_code, "deceased": deceased,
                         "band": "deceased" if deceased else _band(_age(patient["birthDate"], today)),
                         "cards": [(c["source"]["topic"]["code"], c["indicator"]) for c in cards]})
    return {"corpus": corpus, "date": today.isoformat(), "rows": rows}


def summarise(result: dict) -> str:
    rows = result["rows"]
    out = [f"Corpus `{result['corpus']}`: {len(rows)} charts, opened {result['date']}; "
           f"statuses {dict(collections.Counter(r['status'] for r in rows))}.", "",
           "| Patients | Charts | Mean cards | Max | Charts with any card | Info cards (mean) |",
           "|---|---|---|---|---|---|"]
    order = [f"{lo}-{hi}" if hi != 200 else f"{lo}+" for lo, hi in BANDS] + ["deceased", "all living"]
    groups = collections.defaultdict(list)
    for r in rows:
        groups[r["band"]].append(r)
        if not r["deceased"]:
            groups["all living"].append(r)
    for band in order:
        g = groups.get(band, [])
        if not g:
            continue
        counts = [len(r["cards"]) for r in g]
        info = [sum(1 for _, ind in r["cards"] if ind == "info") for r in g]
        out.append(f"| {band} | {len(g)} | {statistics.mean(counts):.2f} | {max(counts)} | "
                   f"{sum(1 for c in counts if c)} | {statistics.mean(info):.2f} |")
    living = groups["all living"]
    by_id = collections.Counter(cid for r in living for cid, _ in r["cards"])
    out += ["", "| Card id (living patients) | Share of chart opens |", "|---|---|"]
    for cid, n in by_id.most_common():
        out.append(f"| {cid} | {100 * n / len(living):.0f} % ({n}) |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="synthea")
    parser.add_argument("--json", action="store_true", help="print the raw per-chart figures")
    args = parser.parse_args()
    result = measure(args.corpus)
    print(json.dumps(result, indent=1) if args.json else summarise(result))


if __name__ == "__main__":
    main()
