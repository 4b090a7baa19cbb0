"""Card burden on the fixture patients (issue 12, second-pass section 7):
every fhir_fixtures/patients fixture through patient-view over the real
Flask app, first chart open (nothing quieted by feedback), dates shifted to
today; the cards shown with the production budgets (CDS_INFO_CARD_BUDGET,
default 2 info cards; CDS_ROUTINE_CARD_BUDGET, default 1 routine card and
only when no decision or test card is shown), and beside them what the
rules chose before the budgets (both lifted).

    .venv/bin/python -m benchmarks.burden             # markdown tables
    .venv/bin/python -m benchmarks.burden --json      # the raw per-patient figures

Reported: mean, median and maximum cards per patient-view, mean info cards,
the share of chart opens per card id, and the info cards of the fixtures
tagged "care up to date" (target: none).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import statistics
import tempfile
import uuid

ENDPOINT = "/cds-services/osteoporosis-patient-view"
SECRET = "burden-benchmark-patient-hash-secret-0123"


def _cards(client, body) -> list[tuple[str, str]]:
    resp = client.post(ENDPOINT, json=dict(body, hookInstance=str(uuid.uuid4())))
    if resp.status_code != 200:
        raise RuntimeError(f"patient-view answered {resp.status_code}")
    return [(c["source"]["topic"]["code"], c["indicator"]) for c in resp.get_json()["cards"]]


def measure() -> dict:
    from cds_service import fixtures as fx
    from cds_service.app import create_app
    from cds_service.config import load_settings

    today = dt.date.today()
    defaults = load_settings(environ={})
    budget = f"{defaults.info_card_budget} info cards, {defaults.routine_card_budget} routine"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = {"CDS_AUTH_REQUIRED": "false", "CDS_PATIENT_HASH_SECRET": SECRET, "CDS_LOG_LEVEL": "ERROR"}
        shown_app = create_app(base | {"CDS_DATABASE_URL": f"sqlite:///{tmp}/shown.db"})
        chosen_app = create_app(base | {"CDS_DATABASE_URL": f"sqlite:///{tmp}/chosen.db",
                                        "CDS_INFO_CARD_BUDGET": "1000", "CDS_ROUTINE_CARD_BUDGET": "1000"})
        shown_client, chosen_client = shown_app.test_client(), chosen_app.test_client()
        for name in fx.patient_names():
            bundle = fx.load_patient(name, today=today)
            prefetch = fx.prefetch_from_bundle(bundle)
            body = {"hook": "patient-view", "prefetch": prefetch,
                    "context": {"patientId": prefetch["patient"]["id"], "userId": "Practitioner/example"}}
            rows.append({"fixture": name, "care_up_to_date": fx.care_up_to_date(bundle, "patient-view"),
                         "shown": _cards(shown_client, body), "chosen": _cards(chosen_client, body)})
    return {"date": today.isoformat(), "budget": budget, "rows": rows}


def _stats(lists: list[list[tuple[str, str]]]) -> tuple[float, float, int, float]:
    counts = [len(c) for c in lists]
    info = [sum(1 for _, ind in c if ind == "info") for c in lists]
    return statistics.mean(counts), statistics.median(counts), max(counts), statistics.mean(info)


def summarise(result: dict) -> str:
    rows = result["rows"]
    n = len(rows)
    out = [f"{n} fixture patients, patient-view on {result['date']} (first chart open).", "",
           "| Cards per patient-view | Mean | Median | Max | Info cards (mean) |", "|---|---|---|---|---|"]
    for label, key in ((f"shown (production budgets: {result['budget']})", "shown"),
                       ("chosen by the rules (budgets lifted)", "chosen")):
        mean, median, top, info = _stats([r[key] for r in rows])
        out.append(f"| {label} | {mean:.2f} | {median:g} | {top} | {info:.2f} |")
    shown = collections.Counter(cid for r in rows for cid, _ in r["shown"])
    chosen = collections.Counter(cid for r in rows for cid, _ in r["chosen"])
    out += ["", "| Card id | Share of chart opens (shown) | Chosen by the rules |", "|---|---|---|"]
    for cid, _ in sorted(chosen.items(), key=lambda kv: (-shown[kv[0]], -kv[1], kv[0])):
        out.append(f"| {cid} | {100 * shown[cid] / n:.0f} % ({shown[cid]}) | {100 * chosen[cid] / n:.0f} % "
                   f"({chosen[cid]}) |")
    up = [r for r in rows if r["care_up_to_date"]]
    if up:
        out += ["", "| Care up to date (fixture) | Info cards chosen | Cards shown |", "|---|---|---|"]
        for r in up:
            info = [cid for cid, ind in r["chosen"] if ind == "info"]
            out.append(f"| {r['fixture']} | {len(info)}{' (' + ', '.join(info) + ')' if info else ''} | "
                       f"{', '.join(cid for cid, _ in r['shown']) or 'none'} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the raw per-patient figures")
    args = parser.parse_args()
    result = measure()
    print(json.dumps(result, indent=1) if args.json else summarise(result))


if __name__ == "__main__":
    main()
