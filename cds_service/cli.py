"""The `cds-service` command: serve, print discovery, migrate the database."""

from __future__ import annotations

import argparse
import json
import sys

from cds_service.config import SettingsError, load_settings


def _serve(args: argparse.Namespace) -> int:
    overrides = {"CDS_PROFILE": "development"} if args.dev else {}
    settings = load_settings(overrides)
    host = args.host or settings.host
    port = args.port or settings.port
    print(f"CDS discovery: http://{host}:{port}/cds-services (profile: {settings.profile})", file=sys.stderr)
    if args.dev:
        # Flask's own server: one process, fine for a laptop and the sandbox.
        from cds_service.app import create_app
        from cds_service.server import run_development

        run_development(create_app(overrides), host, port)
    else:
        from cds_service.server import run_production

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
    report = outcome_report(Store.from_url(load_settings().database_url), since=since)
    print(json.dumps(report, indent=2) if args.json else as_text(report))
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
