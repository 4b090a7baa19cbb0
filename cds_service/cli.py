"""The `cds-service` command: serve, print discovery, migrate and purge the
database, evaluate a patient file, list the clinical rules, render the example requests."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import re
import sys
import uuid
from pathlib import Path

from cds_service.config import SettingsError, load_settings

log = logging.getLogger("cds_service.cli")


class CommandError(Exception):
    """A problem the operator can fix, told in one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def _checked_settings(overrides: dict | None = None, probes: tuple[str, ...] | None = None):
    """Settings, with the probes of `probes` (env names; None: all) run too:
    every problem at once as one SettingsError."""
    return load_settings(overrides, probes=probes or "all")


def _migrate_now(settings) -> str:
    """Bring the schema to the latest revision; one line if the database
    cannot be reached or was migrated by a newer release."""
    from sqlalchemy.exc import OperationalError

    from cds_service import migrations
    from cds_service.db_schema import SchemaNewer
    from cds_service.store import make_engine

    engine = make_engine(settings.database_url)
    try:
        return migrations.upgrade(engine)
    except SchemaNewer as exc:
        raise CommandError(str(exc)) from None
    except OperationalError as exc:
        raise CommandError(f"cannot reach the database (CDS_DATABASE_URL): {_first_line(exc.orig)}") from None
    finally:
        engine.dispose()


def _first_line(exc: object) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_listen(host: str, port: int) -> None:
    """Bind once before anything starts, so a wrong address or a port in use
    is one line (gunicorn would retry for 5 s, then exit)."""
    import errno
    import socket

    try:
        family, kind, proto, _name, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise CommandError(f"--host/CDS_HOST {host!r} is not an address to listen on ({exc.strerror})",
                           code=2) from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            in_use = exc.errno == errno.EADDRINUSE
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}"
                               + ("; stop what uses it or choose another --port/CDS_PORT" if in_use else ""),
                               code=1 if in_use else 2) from None


def _serve(args: argparse.Namespace) -> int:
    overrides = {"CDS_PROFILE": "development"} if args.dev else {}
    settings = _checked_settings(overrides)
    host = args.host or settings.host
    port = settings.port if args.port is None else args.port
    _check_listen(host, port)
    if settings.auto_migrate:
        # Here, once, before any worker starts: a worker restarted while the
        # database is down then still starts (and answers 503) instead of
        # failing to boot, which would stop the whole server.
        _migrate_now(settings)
    from cds_service.config import unknown_variables

    if not args.dev:
        from cds_service.config import production_warnings
        from cds_service.logs import configure_logging

        configure_logging(settings.log_level)
        for warning in production_warnings(settings) + unknown_variables():
            log.warning(warning, extra={"event": "configuration_warning"})
    else:
        for warning in unknown_variables():
            print(f"WARNING: {warning}", file=sys.stderr)
    if args.dev:
        # Flask's own server: one process, fine for a laptop and the sandbox.
        from cds_service.app import create_app
        from cds_service.server import run_development

        app = create_app({**overrides, "CDS_AUTO_MIGRATE": "false"})
        print(f"CDS discovery: http://{host}:{port}/cds-services (profile: {settings.profile})", file=sys.stderr)
        warning = _dev_exposure_warning(settings, host)
        if warning:
            print(warning, file=sys.stderr)
        run_development(app, host, port)
        return 0
    # The production server runs in a fresh interpreter (same process id): the
    # checks above imported database drivers and HTTP libraries that the
    # gevent workers must only see after they have patched the standard
    # library (see cds_service/gunicorn_worker.py).
    from cds_service.server import exec_production

    exec_production(host, port)
    return 0  # not reached


def _dev_exposure_warning(settings, host: str) -> str | None:
    """--dev turns authentication off: say so when the address is reachable
    from other machines (0.0.0.0, ::, a LAN address or name)."""
    from cds_service.fhir.allowlist import is_loopback

    if settings.auth_required or is_loopback(host.strip("[]")):
        return None
    where = "every interface" if host in ("0.0.0.0", "::", "[::]", "") else host
    return (f"WARNING: development server listening on {where} ({host}) with client authentication off "
            "(CDS_AUTH_REQUIRED=false): anyone who can reach this machine can call it and post feedback. "
            "Use --host 127.0.0.1, or set CDS_AUTH_REQUIRED=true.")


def _card_settings():
    """Settings for a command that evaluates or describes cards, with the server's
    start-up configuration applied (the site's value sets: config.configure_terminology)."""
    from cds_service.config import configure_terminology

    settings = load_settings()
    configure_terminology(settings)
    return settings


def _discovery(args: argparse.Namespace) -> int:
    from cds_service.services import all_services

    _card_settings()  # the prefetch templates hold the site's codes too
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


# Set by the Helm chart itself and refused in its `settings` (helm/osteoporosis-cds/templates/_helpers.tpl).
CHART_MANAGED = ("CDS_DATABASE_URL", "CDS_TRUSTED_ISSUERS", "CDS_HOST", "CDS_PORT", "CDS_AUTO_MIGRATE",
                 "CDS_REPORT_TOKEN", "CDS_PATIENT_HASH_SECRET")


def chart_values_schema() -> dict:
    """The Helm chart's values.schema.json: `settings` takes exactly the
    variables the service reads (a misspelt one is refused at install), each a
    string, number or boolean. Names only, from the one list of settings, so
    a reworded description leaves the chart alone."""
    from cds_service.config import SETTINGS

    names = [s.env for s in SETTINGS] + ["CDS_DATA_DIR"]  # the packaging variable (README, "Settings")
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$comment": "Generated by tools/sync_readme.py from cds_service/config.py; do not edit by hand.",
        "type": "object",
        "properties": {
            "settings": {
                "description": "CDS_ settings of the service (`cds-service settings` lists them); those the "
                               "chart manages are accepted here and refused by its templates with a message.",
                "type": "object",
                "additionalProperties": False,
                "properties": {name: {"type": ["string", "number", "boolean"]} for name in names},
            },
        },
    }


def _settings(args: argparse.Namespace) -> int:
    print(settings_table())
    return 0


def _migrate(args: argparse.Namespace) -> int:
    revision = _migrate_now(_checked_settings(probes=("CDS_DATABASE_URL",)))
    print(f"database schema is at revision {revision}", file=sys.stderr)
    return 0


@contextlib.contextmanager
def _existing_store():
    """(settings, store) for the feedback database named by CDS_DATABASE_URL,
    which must exist with its schema; otherwise one line (and no empty SQLite
    file left behind, which merely connecting would create)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from cds_service.db_schema import engine_state
    from cds_service.store import Store

    settings = _checked_settings(probes=("CDS_DATABASE_URL",))
    no_schema = ("the feedback database has no schema yet: check CDS_DATABASE_URL (the default SQLite "
                 "file is cds_service.db in the current folder) or run `cds-service migrate`")
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():
        raise CommandError(f"no database file {Path(url.database).resolve()}: " + no_schema)
    store = Store.from_url(settings.database_url)
    try:
        if engine_state(store.engine).status == "missing":
            raise CommandError(no_schema)
        yield settings, store
    except OperationalError as exc:
        raise CommandError(f"cannot reach the database (CDS_DATABASE_URL): {_first_line(exc.orig)}") from None
    finally:
        store.engine.dispose()


def _report(args: argparse.Namespace) -> int:
    from cds_service.protocol.report_api import parse_since
    from cds_service.report import as_text, outcome_report

    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since)
        except Exception:
            raise CommandError("--since must be an ISO 8601 date, e.g. 2026-01-01", code=2) from None
    with _existing_store() as (_settings, store):
        report = outcome_report(store, since=since)
    print(json.dumps(report, indent=2) if args.json else as_text(report))
    return 0


def _purge(args: argparse.Namespace) -> int:
    """Delete issued cards and feedback older than CDS_RETENTION_DAYS, and
    quieting rows older than the longest quiet period."""
    with _existing_store() as (settings, store):
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

    settings = _card_settings()
    bundle, anchor = load_bundle(path, today=today)
    body = hook_request(bundle, hook, hook_instance=str(uuid.uuid4()))
    service = next(s for s in all_services() if s.hook == hook)
    # As the service answers a first chart open: the info budget applies (unless
    # every_card), no feedback has quieted anything.
    budget = hook == "patient-view" and not every_card
    policy = CardPolicy(info_budget=settings.info_card_budget if budget else None,
                        routine_budget=settings.routine_card_budget if budget else None)
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
        held = (f" | held back by the info budget (CDS_INFO_CARD_BUDGET={settings.info_card_budget}, "
                f"CDS_ROUTINE_CARD_BUDGET={settings.routine_card_budget}): "
                + ", ".join(h.card_id for h in outcome.held))
    header = (f"{Path(path).name} | {hook} | patient {body['context']['patientId']} | {when}{drafts} | "
              f"{len(cards)} card(s){held}")
    return cards, header


def _evaluate(args: argparse.Namespace) -> int:
    today = args.today or dt.date.today()
    try:
        cards, header = evaluate_bundle(args.path, args.hook, today, every_card=args.all)
    except SettingsError:
        raise
    except OSError as exc:  # unreadable file
        raise CommandError(f"{exc.filename or args.path}: {exc.strerror or exc}", code=2) from None
    except ValueError as exc:  # unknown name, bad JSON, not a Bundle (the message names the file)
        raise CommandError(str(exc), code=2) from None
    if args.json:
        print(json.dumps({"cards": cards}, indent=2))
    else:
        print(format_cards(cards, header), end="")
    return 0


def _render_requests(args: argparse.Namespace) -> int:
    from cds_service.fixture_requests import render_requests
    from cds_service.fixtures import fixtures_dir

    out = Path(args.out) if args.out else fixtures_dir() / "requests"
    try:
        written = render_requests(out, args.today or dt.date.today())
    except OSError as exc:
        raise CommandError(f"cannot write to {out}: {exc.strerror or exc}", code=2) from None
    for path in written:
        print(path)
    return 0


def _test_client_keys(args: argparse.Namespace) -> int:
    from cds_service import test_client

    try:
        key_path, trust_path = test_client.make_keys(Path(args.dir))
    except test_client.TestClientError as exc:
        raise CommandError(str(exc), code=2) from None
    print(f"FOR TESTING ONLY: private key {key_path}, trust file {trust_path}\n"
          f"export CDS_TRUSTED_ISSUERS={trust_path.resolve()}", file=sys.stderr)
    return 0


def _test_client_token(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit

    from cds_service import test_client

    if urlsplit(args.url).scheme not in ("http", "https"):
        raise CommandError(f"URL must be the full endpoint URL, e.g. http://127.0.0.1:8080/cds-services/"
                           f"osteoporosis-patient-view; got {args.url!r}", code=2)
    try:
        print(test_client.make_token(Path(args.dir), args.url))
    except test_client.TestClientError as exc:
        raise CommandError(str(exc), code=2) from None
    return 0


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 1 and 65535, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (exit 2); the full
    usage is one --help away."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cds-service", description="Osteoporosis CDS Hooks service")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
        # `help` is the line in `cds-service --help`; `description` is what
        # `cds-service NAME --help` shows.
        return sub.add_parser(name, help=summary, description=summary + (". " + details if details else "."))

    serve = command("serve", "run the HTTP service",
                    "Settings come from CDS_... environment variables (`cds-service settings` lists them); "
                    "they are all checked before the server starts, and each problem is reported on one "
                    "line (exit status 2)")
    serve.add_argument("--host", help="address to bind (default: CDS_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to bind (default: CDS_PORT, 8080)")
    serve.add_argument("--dev", action="store_true",
                       help="development profile on Flask's own server (trusts the public CDS Hooks "
                            "sandbox); without it, the production server (gunicorn)")
    serve.set_defaults(func=_serve)

    disc = command("discovery", "print the discovery document",
                   "The JSON the service answers at GET /cds-services: its three CDS Hooks services "
                   "with their prefetch templates")
    disc.set_defaults(func=_discovery)

    table = command("settings", "print every setting with its default as a Markdown table",
                    "The CDS_... environment variables the service reads, with their production and "
                    "development defaults and meaning (the README's settings table)")
    table.set_defaults(func=_settings)

    report = command("report", "acceptance and override rates and top override reasons by card id",
                     "Reads the feedback database named by CDS_DATABASE_URL")
    report.add_argument("--since", help="only cards and feedback since this ISO 8601 date")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.set_defaults(func=_report)

    migrate = command("migrate", "create or upgrade the database schema",
                      "Applies the Alembic migrations to the database named by CDS_DATABASE_URL (SQLite or "
                      "PostgreSQL); safe to run again, and from several pods at once. `serve` does the same "
                      "at start-up unless CDS_AUTO_MIGRATE=false")
    migrate.set_defaults(func=_migrate)

    purge = command("purge", "delete issued cards and feedback older than CDS_RETENTION_DAYS "
                             "(and quieting older than the longest quiet period)",
                    "Works on the database named by CDS_DATABASE_URL; prints what it deleted as JSON")
    purge.set_defaults(func=_purge)

    rules = command("rules", "print every card (rule) with its hooks, source and settings as Markdown",
                    "One row per card in cards/: hooks, indicators, summary, cited source and the "
                    "settings that tune it (the README's clinical rules table)")
    rules.set_defaults(func=_rules)

    evaluate = command("evaluate", "run one patient Bundle through a hook and print the cards")
    evaluate.add_argument("path", help="a patient Bundle (fixture file, fixture name or any Bundle of that shape)")
    evaluate.add_argument("--hook", choices=("patient-view", "order-select", "order-sign"), default="patient-view")
    evaluate.add_argument("--today", type=_date, help="evaluation date YYYY-MM-DD (default: today); "
                                                      "anchor-dated fixtures are shifted to it")
    evaluate.add_argument("--json", action="store_true", help="print the CDS Hooks response JSON")
    evaluate.add_argument("--all", action="store_true",
                          help="every card the rules choose, without the info-card budget of patient-view")
    evaluate.set_defaults(func=_evaluate)

    fixtures = command("fixtures", "fixture tools")
    fixtures_sub = fixtures.add_subparsers(dest="fixtures_command", required=True)
    render = fixtures_sub.add_parser("render-requests",
                                     help="write the example hook requests in fhir_fixtures/requests/")
    render.add_argument("--today", type=_date, help="date to shift the fixtures to (default: today)")
    render.add_argument("--out", help="output directory (default: fhir_fixtures/requests)")
    render.set_defaults(func=_render_requests)

    client = command("test-client", "FOR TESTING ONLY: a stand-in CDS client for smoke tests",
                     "Makes a key pair and the trust file that trusts it, and signs client JWTs with it, "
                     "so a production server can be tried end to end. A real EHR signs its own JWTs")
    client_sub = client.add_subparsers(dest="test_client_command", required=True)
    keys = client_sub.add_parser("keys", help="write a test key pair and trust file into a folder",
                                 description="Write test-client-key.pem (the private key, owner-only) and "
                                             "trusted_issuers.json (for CDS_TRUSTED_ISSUERS) into --dir.")
    keys.add_argument("--dir", required=True, help="folder to write them in (created if missing)")
    keys.set_defaults(func=_test_client_keys)
    token = client_sub.add_parser("token", help="print a client JWT for one endpoint URL",
                                  description="Print a client JWT for URL (its audience), valid 5 minutes, "
                                              "signed with the key in --dir.")
    token.add_argument("url", help="the full endpoint URL, e.g. "
                                   "http://127.0.0.1:8080/cds-services/osteoporosis-patient-view")
    token.add_argument("--dir", required=True, help="the folder `test-client keys` wrote")
    token.set_defaults(func=_test_client_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    name = "cds-service " + args.command
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"{name}: configuration error: {problem}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader went away (`cds-service rules | head`): that is not an
        # error. Point stdout at /dev/null so the final flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
