"""The `cds-service` command: serve, print discovery, migrate and purge the
database, evaluate a patient file, list the clinical rules, render the example requests."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import uuid
from pathlib import Path

from cds_service.config import SettingsError, check_serving, load_settings


def _serve(args: argparse.Namespace) -> int:
    overrides = {"CDS_PROFILE": "development"} if args.dev else {}
    settings = load_settings(overrides)
    check_serving(settings)  # before gunicorn starts workers that would each fail on it
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"CDS discovery: http://{host}:{port}/cds-services (profile: {settings.profile})", file=sys.stderr)
    if args.dev:
        # Flask's own server: one process, fine for a laptop and the sandbox.
        from cds_service.app import create_app
        from cds_service.server import run_development

        run_development(create_app(overrides), host, port)
    else:
        from cds_service.app import configure_valuesets
        from cds_service.server import run_production

        configure_valuesets(settings.extra_valuesets_dir)  # a bad file fails here, before any worker starts
        run_production(settings, host=host, port=port)
    return 0


def _discovery(args: argparse.Namespace) -> int:
    from cds_service.services import all_services

    print(json.dumps({"services": [s.discovery_entry() for s in all_services()]}, indent=2))
    return 0


def settings_table() -> str:
    """The README's settings table, generated from the one list of settings."""
    from cds_service.config import SETTINGS, _SAME

    def show(value) -> str:
        if isinstance(value, tuple):
            value = ",".join(str(v) for v in value)
        if isinstance(value, bool):
            value = str(value).lower()
        return f"`{value}`" if value != "" else "(empty)"

    lines = ["| Setting | Default | Development profile | Meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        dev = "same" if s.dev_default is _SAME else show(s.dev_default)
        lines.append(f"| `{s.env}` | {show(s.default)} | {dev} | {s.description} |")
    return "\n".join(lines)


def _settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from cds_service import migrations
    from cds_service.store import make_engine

    settings = load_settings()
    revision = migrations.upgrade(make_engine(settings.database_url))
    print(f"database schema is at revision {revision}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from cds_service.protocol.report_api import parse_since
    from cds_service.report import as_text, outcome_report
    from cds_service.store import Store

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since)
        except Exception:
            print("cds-service: --since must be an ISO 8601 date, e.g. 2026-01-01", file=sys.stderr)
            return 2
    from cds_service import migrations

    store = Store.from_url(load_settings().database_url)
    if migrations.current_revision(store.engine) is None:
        # E.g. run from another folder than the service (the default SQLite
        # file is relative to the working directory): say so, not a traceback.
        print("cds-service: the feedback database has no schema yet: check CDS_DATABASE_URL "
              "(the default SQLite file is cds_service.db in the current folder) or run "
              "`cds-service migrate`", file=sys.stderr)
        return 1
    report = outcome_report(store, since=since)
    print(json.dumps(report, indent=2) if args.json else as_text(report))
    return 0


def _purge(args: argparse.Namespace) -> int:
    """Delete issued cards and feedback older than CDS_RETENTION_DAYS, and
    quieting rows older than the longest quiet period."""
    from cds_service import migrations
    from cds_service.store import Store

    settings = load_settings()
    store = Store.from_url(settings.database_url)
    if migrations.current_revision(store.engine) is None:
        print("cds-service: the feedback database has no schema yet: check CDS_DATABASE_URL", file=sys.stderr)
        return 1
    now = dt.datetime.now(dt.timezone.utc)
    longest_quiet = max(settings.quiet_info_days, settings.quiet_warning_days)
    result = store.purge(now - dt.timedelta(days=settings.retention_days),
                         now - dt.timedelta(days=longest_quiet))
    print(json.dumps({"retentionDays": settings.retention_days, "quietDays": longest_quiet,
                      "deleted": {"issuedCards": result.issued_cards, "feedback": result.feedback,
                                  "quietedCards": result.quieted_cards}}))
    return 0


# --- rules: the card catalogue as a Markdown table ------------------------------

def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def rules_table() -> str:
    """The README's "Clinical rules" table: every card in cards/, with its
    hooks and indicators from the catalogue and the settings that tune it."""
    import dataclasses

    from cds_service.card_render import card_ids, load_card
    from cds_service.config import SETTINGS
    from cds_service.rules.catalogue import CATALOGUE
    from cds_service.rules.settings import DEFAULT

    env = {s.name: s.env for s in SETTINGS}
    fields = {f.name for f in dataclasses.fields(DEFAULT)}
    lines = ["| Card | Hooks | Indicators | Summary | Source | Tuned by |", "|---|---|---|---|---|---|"]
    for card_id in card_ids():
        card = load_card(card_id)
        hooks, indicators = CATALOGUE.get(card_id, ((), ()))
        source = card.get("source") or {}
        tuned = []
        for name in card.get("settings") or ():
            if name not in fields:
                raise ValueError(f"{card_id}.yaml: unknown setting {name!r}")
            default = getattr(DEFAULT, name)
            if isinstance(default, tuple):
                default = ",".join(str(v) for v in default)
            if isinstance(default, bool):
                default = str(default).lower()
            tuned.append(f"`{env[name]}` ({default})" if name in env else f"`{name}` = {default} (built-in)")
        lines.append(" | ".join([
            f"| `{card_id}`", ", ".join(hooks) or "(not in catalogue)", ", ".join(indicators),
            _cell(card.get("summary", "")),
            f"[{_cell(source.get('label', ''))}]({source.get('url', '')})",
            "; ".join(tuned) or "-",
        ]) + " |")
    return "\n".join(lines)


def value_order_table() -> str:
    """The README's order of value for the info-card budget, from the catalogue."""
    from cds_service.rules.catalogue import UNRANKED_TIER, VALUE_TIERS

    lines = ["| Rank | Tier | Card ids, most valuable first |", "|---|---|---|"]
    for rank, (name, ids) in enumerate(VALUE_TIERS, start=1):
        shown = ", ".join(f"`{i}`" for i in ids) if rank - 1 != UNRANKED_TIER else "any info id not listed"
        lines.append(f"| {rank} | {name} | {shown} |")
    return "\n".join(lines)


def _rules(args: argparse.Namespace) -> int:
    print(rules_table())
    return 0


# --- evaluate: one patient Bundle through the real service, for reviewers ------

_SYSTEMS = {
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
    "http://nucc.org/provider-taxonomy": "NUCC",
}


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def plain_text(markdown: str) -> str:
    """Card detail without Markdown markup (bold, code, links), for a terminal."""
    text = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r"\1 (\2)", markdown)
    text = text.replace("**", "").replace("__", "").replace("`", "")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _order_codes(resource: dict) -> str:
    concept = resource.get("medicationCodeableConcept") or resource.get("code") or {}
    codes = [f"{_SYSTEMS.get(c.get('system'), c.get('system', '?'))} {c.get('code')}"
             + (f" {c['display']}" if c.get("display") else "")
             for c in concept.get("coding") or ()]
    return "; ".join(codes) or concept.get("text") or "(no code)"


def format_cards(cards: list[dict], header: str) -> str:
    """Cards as plain text: indicator, card id, summary, detail, suggestions
    with their order codes, override reasons."""
    out = [header, ""]
    if not cards:
        out.append("No cards.")
    for card in cards:
        topic = card.get("source", {}).get("topic", {})
        out.append(f"[{card['indicator'].upper()}] {topic.get('code', '?')}: {card['summary']}")
        source = card.get("source", {})
        out.append(f"  Source: {source.get('label', '')}" + (f" <{source['url']}>" if source.get("url") else ""))
        out.append("")
        out += ["    " + line if line else "" for line in plain_text(card.get("detail", "")).splitlines()]
        suggestions = card.get("suggestions") or []
        if suggestions:
            out.append("")
            out.append(f"  Suggestions ({card.get('selectionBehavior', 'any')}):")
            for s in suggestions:
                out.append(f"  - {s['label']}" + (" [recommended]" if s.get("isRecommended") else ""))
                for a in s.get("actions") or ():
                    if a.get("type") == "delete":
                        # resourceId is one relative reference (a string), not a list of them
                        target = a.get("resourceId") or ""
                        target = ", ".join(target) if isinstance(target, list) else target
                        out.append(f"      delete {target}: {a.get('description', '')}")
                    else:
                        res = a.get("resource") or {}
                        out.append(f"      {a.get('type')} {res.get('resourceType', '?')}: {_order_codes(res)}")
        reasons = card.get("overrideReasons") or []
        if reasons:
            out.append("  Override reasons: " + "; ".join(r.get("display") or r.get("code", "") for r in reasons))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def evaluate_bundle(path: str, hook: str, today: dt.date, every_card: bool = False) -> tuple[list[dict], str]:
    """(finished CDS Hooks cards, header line) for one patient Bundle."""
    from cds_service.card_policy import CardPolicy
    from cds_service.fixture_requests import hook_request, load_bundle
    from cds_service.protocol.responses import finish_cards
    from cds_service.services import HookCall, all_services

    bundle, anchor = load_bundle(path, today=today)
    body = hook_request(bundle, hook, hook_instance=str(uuid.uuid4()))
    service = next(s for s in all_services() if s.hook == hook)
    settings = load_settings()
    # As the service answers a first chart open: the info budget applies (unless
    # every_card), no feedback has quieted anything.
    budget = settings.info_card_budget if hook == "patient-view" and not every_card else None
    policy = CardPolicy(info_budget=budget)
    call = HookCall(service_id=service.id, hook=hook, hook_instance=body["hookInstance"],
                    context=body["context"], prefetch=body["prefetch"], today=today, settings=settings,
                    policy=policy)
    outcome = service.evaluate(call)
    cards = finish_cards(outcome.cards)
    when = (f"dates shifted from anchor {anchor} to {today}" if anchor
            else f"evaluated on {today}, dates as written (no anchor tag)")
    drafts = ""
    if hook != "patient-view":
        drafts = f", {len(body['context']['draftOrders']['entry'])} draft order(s)"
    held = ""
    if outcome.held:
        held = (f" | held back by the info budget (CDS_INFO_CARD_BUDGET={settings.info_card_budget}): "
                + ", ".join(h.card_id for h in outcome.held))
    header = (f"{Path(path).name} | {hook} | patient {body['context']['patientId']} | {when}{drafts} | "
              f"{len(cards)} card(s){held}")
    return cards, header


def _evaluate(args: argparse.Namespace) -> int:
    today = args.today or dt.date.today()
    try:
        cards, header = evaluate_bundle(args.path, args.hook, today, every_card=args.all)
    except (OSError, ValueError) as exc:  # unreadable file, bad JSON, not a Bundle
        print(f"cds-service evaluate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"cards": cards}, indent=2))
    else:
        print(format_cards(cards, header), end="")
    return 0


def _render_requests(args: argparse.Namespace) -> int:
    from cds_service.fixture_requests import render_requests
    from cds_service.fixtures import fixtures_dir

    out = Path(args.out) if args.out else fixtures_dir() / "requests"
    for path in render_requests(out, args.today or dt.date.today()):
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cds-service", description="Osteoporosis CDS Hooks service")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to bind (default: CDS_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default: CDS_PORT, 8080)")
    serve.add_argument("--dev", action="store_true",
                       help="development profile on Flask's own server (trusts the public CDS Hooks "
                            "sandbox); without it, the production server (gunicorn)")
    serve.set_defaults(func=_serve)

    disc = sub.add_parser("discovery", help="print the discovery document")
    disc.set_defaults(func=_discovery)

    table = sub.add_parser("settings", help="print every setting with its default as a Markdown table")
    table.set_defaults(func=_settings)

    report = sub.add_parser("report", help="acceptance and override rates and top override reasons by card id")
    report.add_argument("--since", help="only cards and feedback since this ISO 8601 date")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.set_defaults(func=_report)

    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.set_defaults(func=_migrate)

    purge = sub.add_parser("purge", help="delete issued cards and feedback older than CDS_RETENTION_DAYS "
                                         "(and quieting older than the longest quiet period)")
    purge.set_defaults(func=_purge)

    rules = sub.add_parser("rules", help="print every card (rule) with its hooks, source and settings as Markdown")
    rules.set_defaults(func=_rules)

    evaluate = sub.add_parser("evaluate", help="run one patient Bundle through a hook and print the cards")
    evaluate.add_argument("path", help="a patient Bundle (fixture file, fixture name or any Bundle of that shape)")
    evaluate.add_argument("--hook", choices=("patient-view", "order-select", "order-sign"), default="patient-view")
    evaluate.add_argument("--today", type=_date, help="evaluation date YYYY-MM-DD (default: today); "
                                                      "anchor-dated fixtures are shifted to it")
    evaluate.add_argument("--json", action="store_true", help="print the CDS Hooks response JSON")
    evaluate.add_argument("--all", action="store_true",
                          help="every card the rules choose, without the info-card budget of patient-view")
    evaluate.set_defaults(func=_evaluate)

    fixtures = sub.add_parser("fixtures", help="fixture tools")
    fixtures_sub = fixtures.add_subparsers(dest="fixtures_command", required=True)
    render = fixtures_sub.add_parser("render-requests",
                                     help="write the example hook requests in fhir_fixtures/requests/")
    render.add_argument("--today", type=_date, help="date to shift the fixtures to (default: today)")
    render.add_argument("--out", help="output directory (default: fhir_fixtures/requests)")
    render.set_defaults(func=_render_requests)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"cds-service: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
