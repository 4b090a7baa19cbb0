"""Every card decision of every fixture request, written to one JSON file, so
that a change meant to leave the output alone (a speed-up of the rules, say)
can be checked field by field:

    .venv/bin/python -m benchmarks.cards_snapshot --out /tmp/before.json
    ... change the code ...
    .venv/bin/python -m benchmarks.cards_snapshot --out /tmp/after.json
    .venv/bin/python -m benchmarks.cards_snapshot --compare /tmp/before.json /tmp/after.json

Cases: every fixture patient (fhir_fixtures/patients) on every hook, and every
real-world chart (fhir_fixtures/realworld/synthea) on patient-view, each
through services.clinical.evaluate (the record, the rules, the order review,
the card policy, the rendering) under several card policies: none, the
production budget, tight budgets, every card quieted (acted on today and
long ago) and each card quieted on its own under the production budget, so
that a card held back lets another one through. The outcome is the cards
(the engine adds no uuids) and the cards held back with their reasons.
A fixed evaluation day keeps two runs comparable.

`--http` does the same through the Flask app as a client sees it (card uuids
left out): every fixture request on every hook, every corpus chart, and for
patient-view, after feedback on the first card, the same request again.
`--tree DIR` runs another source tree (an export of main, say), so the two
snapshots can be taken in either order:

    .venv/bin/python -m benchmarks.cards_snapshot --http --tree /tmp/main --out /tmp/main-http.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

TODAY = dt.date(2026, 11, 30)
PRODUCTION = {"info_budget": 2, "routine_budget": 1}


def _policies(base_cards: list[dict[str, Any]]) -> dict[str, Any]:
    from cds_service.card_policy import CardPolicy
    from cds_service.store import QuietMark

    shown = [(c["source"]["topic"]["code"], c["indicator"]) for c in base_cards]
    out: dict[str, Any] = {
        "budget-production": CardPolicy(**PRODUCTION),
        "budget-0-0": CardPolicy(info_budget=0, routine_budget=0),
        "budget-1-1": CardPolicy(info_budget=1, routine_budget=1),
        "budget-3-no-routine-limit": CardPolicy(info_budget=3, routine_budget=3),
        "quiet-all-today": CardPolicy(quiet={cid: QuietMark(ind, TODAY) for cid, ind in shown}, **PRODUCTION),
        "quiet-all-long-ago": CardPolicy(quiet={cid: QuietMark(ind, TODAY - dt.timedelta(days=800))
                                                for cid, ind in shown}, **PRODUCTION),
        "quiet-all-as-critical": CardPolicy(quiet={cid: QuietMark("critical", TODAY) for cid, _ in shown}),
    }
    for cid, ind in shown:
        out[f"quiet-{cid}"] = CardPolicy(quiet={cid: QuietMark(ind, TODAY)}, **PRODUCTION)
        out[f"quiet-{cid}-long-ago"] = CardPolicy(quiet={cid: QuietMark(ind, TODAY - dt.timedelta(days=400))},
                                                  **PRODUCTION)
    return out


def _outcome(call: Any) -> dict[str, Any]:
    from cds_service.services.clinical import evaluate

    try:
        outcome = evaluate(call)
    except Exception as exc:  # noqa: BLE001 - an error is an outcome to compare too
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"cards": outcome.cards, "held": [[h.card_id, h.reason] for h in outcome.held]}


def _cases(call: Any) -> dict[str, Any]:
    import dataclasses

    from cds_service.card_policy import CardPolicy

    base = _outcome(dataclasses.replace(call, policy=CardPolicy()))
    cases = {"no-policy": base}
    for name, policy in _policies(base.get("cards", [])).items():
        cases[name] = _outcome(dataclasses.replace(call, policy=policy))
    return cases


def snapshot() -> dict[str, Any]:
    from fhir_test_server import FhirStore

    from cds_service import fixtures as fx
    from cds_service.config import load_settings
    from cds_service.fhir.prefetch import render_template
    from cds_service.rules.base import HOOKS
    from cds_service.services import HookCall
    from cds_service.services.prefetch_templates import PREFETCH

    settings = load_settings({}, environ={})
    out: dict[str, Any] = {}

    def call(hook: str, context: dict[str, Any], prefetch: dict[str, Any]) -> HookCall:
        return HookCall(service_id=hook, hook=hook, hook_instance="snapshot", context=context, prefetch=prefetch,
                        today=TODAY, settings=settings)

    for name in fx.patient_names():
        bundle = fx.load_patient(name, today=TODAY)
        prefetch = fx.prefetch_from_bundle(bundle)
        pid = prefetch["patient"]["id"]
        for hook in HOOKS:
            context: dict[str, Any] = {"patientId": pid, "userId": "Practitioner/example"}
            if hook != "patient-view":
                context["draftOrders"] = fx.draft_orders_bundle(bundle)
                if hook == "order-select":
                    context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in fx.drafts_from_bundle(bundle)
                                             if fx.is_selected(r)]
            out[f"fixture/{name}/{hook}"] = _cases(call(hook, context, prefetch))
    for path in fx.realworld_paths("synthea"):
        resources = fx.load_realworld(path, today=TODAY)
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        store = FhirStore(resources)
        prefetch = {key: store.answer(render_template(t, {"patientId": pid})) for key, t in PREFETCH.items()}
        out[f"realworld/{path.name}"] = _cases(call("patient-view", {"patientId": pid,
                                                                     "userId": "Practitioner/example"}, prefetch))
    return out


def _strip_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_uuids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [_strip_uuids(v) for v in value]
    return value


def http_snapshot() -> dict[str, Any]:
    import logging
    import tempfile
    import uuid

    from fhir_test_server import FhirStore

    from cds_service import fixtures as fx
    from cds_service.app import create_app
    from cds_service.fhir.prefetch import render_template
    from cds_service.rules.base import HOOKS
    from cds_service.services.prefetch_templates import PREFETCH

    logging.disable(logging.CRITICAL)
    today = dt.date.today()  # the app evaluates on today's date: charts are shifted to it
    service = {"patient-view": "osteoporosis-patient-view", "order-select": "osteoporosis-order-select",
               "order-sign": "osteoporosis-order-sign"}
    tmp = tempfile.mkdtemp()
    client = create_app({"CDS_DATABASE_URL": f"sqlite:///{tmp}/snapshot.db", "CDS_AUTH_REQUIRED": "false",
                         "CDS_PATIENT_HASH_SECRET": "snapshot-patient-hash-secret-0123456789"}).test_client()
    out: dict[str, Any] = {}

    def post(hook: str, context: dict[str, Any], prefetch: dict[str, Any]) -> tuple[int, Any]:
        body = {"hookInstance": str(uuid.uuid4()), "hook": hook, "context": context, "prefetch": prefetch}
        resp = client.post(f"/cds-services/{service[hook]}", json=body)
        return resp.status_code, resp.get_json()

    def run(name: str, hook: str, context: dict[str, Any], prefetch: dict[str, Any]) -> None:
        status, answer = post(hook, context, prefetch)
        entry: dict[str, Any] = {"status": status, "answer": _strip_uuids(answer)}
        if hook == "patient-view" and status == 200 and answer["cards"]:
            card = answer["cards"][0]
            reason = {"reason": card["overrideReasons"][0]} if card.get("overrideReasons") else {}
            client.post(f"/cds-services/{service[hook]}/feedback", json={"feedback": [{
                "card": card["uuid"], "outcome": "overridden", "overrideReason": reason,
                "outcomeTimestamp": f"{today.isoformat()}T10:00:00Z"}]})
            status, answer = post(hook, context, prefetch)
            entry["after_feedback"] = {"status": status, "answer": _strip_uuids(answer)}
        out[name] = {"http": entry}

    for name in fx.patient_names():
        bundle = fx.load_patient(name, today=today)
        prefetch = fx.prefetch_from_bundle(bundle)
        for hook in HOOKS:
            context: dict[str, Any] = {"patientId": prefetch["patient"]["id"], "userId": "Practitioner/example"}
            if hook != "patient-view":
                context["draftOrders"] = fx.draft_orders_bundle(bundle)
                if hook == "order-select":
                    context["selections"] = [f"{r['resourceType']}/{r['id']}" for r in fx.drafts_from_bundle(bundle)
                                             if fx.is_selected(r)]
            run(f"fixture/{name}/{hook}", hook, context, prefetch)
    for path in fx.realworld_paths("synthea"):
        resources = fx.load_realworld(path, today=today)
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        store = FhirStore(resources)
        prefetch = {key: store.answer(render_template(t, {"patientId": pid})) for key, t in PREFETCH.items()}
        run(f"realworld/{path.name}", "patient-view", {"patientId": pid, "userId": "Practitioner/example"}, prefetch)
    return out


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    problems = [f"{k}: only in the first" for k in a if k not in b]
    problems += [f"{k}: only in the second" for k in b if k not in a]
    for key in a:
        if key in b and a[key] != b[key]:
            cases = [case for case in a[key] if a[key][case] != b[key].get(case)]
            # One line a request: a card change shows in most of its policy cases.
            problems.append(f"{key} differs in {len(cases)} of {len(a[key])} cases ({', '.join(cases[:3])}"
                            f"{', ...' if len(cases) > 3 else ''})")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="write the snapshot here")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"), help="compare two snapshots")
    parser.add_argument("--http", action="store_true", help="through the Flask app, card uuids left out")
    parser.add_argument("--tree", type=Path, help="another source tree to run (default: this checkout)")
    args = parser.parse_args()
    root = (args.tree or Path(__file__).resolve().parents[1]).resolve()
    sys.path[:0] = [str(root), str(root / "tests")]
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        problems = compare(a, b)
        cases = sum(len(v) for v in a.values())
        print("\n".join(problems) or f"identical: {len(a)} requests, {cases} outcomes")
        sys.exit(1 if problems else 0)
    result = http_snapshot() if args.http else snapshot()
    text = json.dumps(result, indent=1, sort_keys=True, ensure_ascii=False)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        held = sum(len(c.get("held", [])) for v in result.values() for c in v.values())
        print(f"{len(result)} requests, {sum(len(v) for v in result.values())} outcomes, {held} cards held back")
    else:
        print(text)


if __name__ == "__main__":
    main()
