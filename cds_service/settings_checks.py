"""The checks config.SETTINGS attaches to each setting.

Three kinds, each a function returning a problem (one line that says what is
wrong and how to fix it, without the setting's name: the caller adds it) or
None:
- check(value, values): a parsed value the service cannot use; refused
  whenever settings are loaded. `values` holds every parsed setting, for the
  checks that depend on another one (the profile, a related timeout).
- probe(value, values): needs the file system or an installed driver
  (database folder, trust file); run by the commands that use the setting,
  before any server worker starts.
- warn(value, values): works, but is unsafe or useless in production; a
  warning at `cds-service serve` start-up.
Heavy imports stay inside the functions: config.py is imported by the
production server's master process, which must not load the libraries its
gevent workers patch (see cds_service/gunicorn_worker.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from cds_service.fhir.allowlist import DEFAULT_PORTS

Check = Callable[[Any, Mapping[str, Any]], "str | None"]


def _production(values: Mapping[str, Any]) -> bool:
    return values.get("profile") == "production"


# --- value checks ------------------------------------------------------------

def at_least(minimum: float, unit: str = "") -> Check:
    def check(value: Any, _values: Mapping[str, Any]) -> str | None:
        if value < minimum:
            return f"must be at least {minimum:g}{unit}, got {value:g}"
        return None
    return check


def more_than(minimum: float, unit: str = "") -> Check:
    def check(value: Any, _values: Mapping[str, Any]) -> str | None:
        if not value > minimum:
            return f"must be more than {minimum:g}{unit}, got {value:g}"
        return None
    return check


def port(value: int, _values: Mapping[str, Any]) -> str | None:
    if not 1 <= value <= 65535:
        return f"must be a TCP port between 1 and 65535, got {value}"
    return None


def not_empty(value: str, _values: Mapping[str, Any]) -> str | None:
    return "must not be empty" if not value else None


def three_numbers(value: tuple[int, ...], _values: Mapping[str, Any]) -> str | None:
    if len(value) != 3:
        return f"needs three numbers of years, e.g. 2,3,5; got {len(value)}"
    if min(value) < 1:
        return f"every interval must be at least 1 year, got {','.join(map(str, value))}"
    if list(value) != sorted(value):
        return (f"the intervals must not shrink as the T-score improves (lowest T first: <= -2.0, "
                f"-1.5 to -1.99, > -1.5), e.g. 2,3,5; got {','.join(map(str, value))}")
    return None


def all_of(*checks: Check) -> Check:
    """The first problem any of `checks` finds."""
    def check(value: Any, values: Mapping[str, Any]) -> str | None:
        return next((problem for c in checks if (problem := c(value, values))), None)
    return check


def above(other: str, other_env: str, *, or_equal: bool = False) -> Check:
    """A range's upper end, checked against its lower end (the setting `other`)."""
    def check(value: Any, values: Mapping[str, Any]) -> str | None:
        low = values.get(other)
        if low is None:
            return None  # the other end was refused itself
        if value < low or (value == low and not or_equal):
            word = "at least" if or_equal else "above"
            return f"must be {word} {other_env} ({low:g}), got {value:g}"
        return None
    return check


def min_length(length: int, example: str) -> Check:
    def check(value: str, _values: Mapping[str, Any]) -> str | None:
        if value and len(value) < length:
            return f"must be at least {length} characters ({example}), got {len(value)}"
        return None
    return check


def retention(value: int, values: Mapping[str, Any]) -> str | None:
    longest = max(values.get("quiet_info_days", 0), values.get("quiet_warning_days", 0))
    if value < max(1, longest):
        return (f"must be at least 1 and at least the longest quiet period ({longest} days, "
                f"CDS_QUIET_INFO_DAYS/CDS_QUIET_WARNING_DAYS), got {value}")
    return None


def base_url(value: str, _values: Mapping[str, Any]) -> str | None:
    """CDS_PUBLIC_BASE_URL: empty, or an absolute http(s) URL without query."""
    from urllib.parse import urlsplit

    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ("not an absolute URL; write it as clients call the service, "
                "e.g. https://cds.example.org (every client JWT's audience is checked against it)")
    if parts.query or parts.fragment:
        return "must be a base URL without query or fragment"
    return None


def fhir_servers(value: tuple[str, ...], values: Mapping[str, Any]) -> str | None:
    from cds_service.fhir.allowlist import NotAllowed, is_loopback, parse_origin

    for entry in value:
        try:
            origin = parse_origin(entry)
        except NotAllowed as exc:
            reason = str(exc).replace("fhirServer", "an entry")
            return f"entry {entry!r}: {reason}; list FHIR base URLs such as https://fhir.example.org/r4"
        # The allowlist would refuse every fetch from it (412 "must use https"): say so now.
        if origin.scheme == "http" and not (values.get("allow_loopback_http") and is_loopback(origin.host)):
            return (f"entry {entry!r}: plain http is never fetched; use https (http only for a loopback "
                    "server with CDS_ALLOW_LOOPBACK_HTTP=true)")
    return None


def cors_origins(value: tuple[str, ...], _values: Mapping[str, Any]) -> str | None:
    """Each entry `*` or an origin as browsers send it (scheme://host[:port],
    lower case, no path): anything else would never match an Origin header."""
    from urllib.parse import urlsplit

    for entry in value:
        if entry == "*":
            continue
        try:
            parts = urlsplit(entry)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname
                or not re.fullmatch(r"[a-z0-9.-]+|[0-9a-f:.]+", parts.hostname)):  # no wildcards, no regexes
            return f"entry {entry!r}: not an origin; write scheme://host[:port], e.g. https://ehr.example.org"
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default_port = DEFAULT_PORTS[parts.scheme]
        origin = f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default_port) else "")
        if parts.path or parts.query or parts.fragment or parts.username is not None or entry != origin.lower():
            return (f"entry {entry!r}: not an origin (scheme://host[:port], lower case, no default port, path or "
                    f"trailing slash); a browser's Origin would never match it: write {origin.lower()!r}")
    return None


# statement_timeout and tcp_user_timeout are PostgreSQL/libpq int32 milliseconds;
# an hour is already far beyond any request's worth of waiting.
MAX_DATABASE_TIMEOUT_SECONDS = 3600


def database_timeout(value: float, _values: Mapping[str, Any]) -> str | None:
    if not value > 0:
        return f"must be more than 0 s, got {value:g}"
    if value > MAX_DATABASE_TIMEOUT_SECONDS:
        return (f"must be at most {MAX_DATABASE_TIMEOUT_SECONDS} s (PostgreSQL holds its timeouts in "
                f"32-bit milliseconds), got {value:g}")
    return None


# The CDS Hooks spec recommends client JWTs live at most 5 minutes.
MAX_JWT_LIFETIME_SECONDS = 86400


def jwt_lifetime(value: int, _values: Mapping[str, Any]) -> str | None:
    if not 1 <= value <= MAX_JWT_LIFETIME_SECONDS:
        return f"must be between 1 and {MAX_JWT_LIFETIME_SECONDS} s (CDS Hooks asks for at most 300), got {value}"
    return None


def request_timeout(value: int, values: Mapping[str, Any]) -> str | None:
    budget = values.get("fhir_total_timeout_seconds", 0)
    if value <= budget:
        return (f"{value} s is not above CDS_FHIR_TOTAL_TIMEOUT_SECONDS ({budget:g} s): a worker waiting "
                "for a slow FHIR server would be killed; raise it or lower the FHIR budget")
    return None


# --- probes (file system, installed drivers) --------------------------------

SUPPORTED_DATABASES = "postgresql+psycopg://user@host/db or sqlite:///path/to/file.db"


def database_url(value: str, _values: Mapping[str, Any]) -> str | None:
    """The URL's form (a check: refused by every command, and by create_app)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    if not value:
        return f"not set; set a database URL: {SUPPORTED_DATABASES}"
    try:
        url = make_url(value)
    except ArgumentError:
        return f"is not a database URL; use {SUPPORTED_DATABASES}"
    backend = url.get_backend_name()
    if backend not in ("postgresql", "sqlite"):
        return f"{backend} databases are not supported; use {SUPPORTED_DATABASES}"
    try:
        driver = url.get_driver_name()
    except NoSuchModuleError:  # e.g. postgresql+foo: SQLAlchemy knows no such driver
        driver = url.drivername.partition("+")[2]
    if backend == "postgresql" and driver != "psycopg":
        return (f"driver {driver!r} is not supported; write the URL as postgresql+psycopg://... "
                "(psycopg 3, which cooperates with the server's gevent worker)")
    if backend == "sqlite" and (driver != "pysqlite" or _in_memory(url)):
        if driver != "pysqlite":
            return f"driver {driver!r} is not supported; write the URL as sqlite:///path/to/file.db"
        # Each connection of the pool, and each worker, would have a database of its
        # own: the schema on one, the hook calls' writes failing on the others (503).
        return ("an in-memory SQLite database is not supported (each connection and each worker "
                "would have its own); use a file, e.g. sqlite:///path/to/cds.db")
    return None


def _in_memory(url: Any) -> bool:
    return (url.database in (None, "", ":memory:") or url.database.startswith("file::memory:")
            or url.query.get("mode") == "memory")


def database_url_usable(value: str, _values: Mapping[str, Any]) -> str | None:
    """What the URL needs on this machine (a probe): the driver installed, the
    SQLite file's folder writable. Runs after database_url accepted its form."""
    from sqlalchemy.engine import make_url

    url = make_url(value)
    if url.get_backend_name() == "postgresql":
        if importlib.util.find_spec("psycopg") is None:
            return ("needs the PostgreSQL driver, which is not installed: "
                    "pip install 'osteoporosis-cds-service[postgres]' (in a checkout: pip install '.[postgres]')")
        return None
    path = url.database
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        return f"folder {folder} does not exist; create it or point the URL at another folder"
    # SQLite writes a journal and a lock file beside the database: the folder
    # itself must be writable, not only the file.
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {folder} is not writable by this user; make it writable or use another folder"
    # Permission bits are not the whole story (/proc, a read-only or full mount, root's
    # access() answering yes): create a file there, as SQLite and the migration lock will.
    import tempfile

    try:
        handle, probe = tempfile.mkstemp(prefix=".cds-write-check-", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        return (f"cannot create files in folder {folder} ({exc.strerror or exc}); "
                "point the URL at a writable folder")
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        return f"file {path} is not readable and writable by this user; fix its permissions"
    return None


TRUST_FILE_HELP = 'see the README, "Trusted issuers"'


def trusted_issuers(value: str, values: Mapping[str, Any]) -> str | None:
    from cds_service.config import SettingsError
    from cds_service.protocol.auth import load_trusted_issuers

    if not value:
        return None
    try:
        load_trusted_issuers(value, values.get("profile", "production"))
    except SettingsError as exc:
        # The loader names the setting and file itself; keep only its reason.
        return str(exc).split("): ", 1)[-1] + f" ({TRUST_FILE_HELP})"
    return None


def required_in_production(how: str) -> Check:
    def probe(value: Any, values: Mapping[str, Any]) -> str | None:
        if _production(values) and not value:
            return f"is required in the production profile ({how})"
        return None
    return probe


def extra_valuesets(value: str, _values: Mapping[str, Any]) -> str | None:
    from cds_service.fhir import valuesets

    if not value:
        return None
    try:
        valuesets.load(value)
    except valuesets.ValueSetError as exc:
        return str(exc)
    return None


# --- production warnings ----------------------------------------------------

def warn_auth_off(value: bool, values: Mapping[str, Any]) -> str | None:
    if _production(values) and not value:
        return "anyone who can reach the service can call it; set it to true in production"
    return None


def warn_no_issuers(value: str, values: Mapping[str, Any]) -> str | None:
    if not (_production(values) and values.get("auth_required")):
        return None
    if not value:
        return ("not set: no CDS client is trusted, so every hook call will be refused (401); point it at "
                "a trust file (`cds-service test-client keys` makes one for testing)")
    # A file trusting no one (the Helm chart's default `{}`) is as closed as no file.
    from cds_service.config import SettingsError
    from cds_service.protocol.auth import load_trusted_issuers

    try:
        issuers = load_trusted_issuers(value, "production")
    except SettingsError:
        return None  # the probe refuses it, before this warning would be given
    if not issuers:
        return ("the trust file names no issuer: no CDS client is trusted, so every hook call will be "
                f"refused (401); add your EHR's issuer and keys to it ({TRUST_FILE_HELP})")
    return None


def warn_no_base_url(value: str, values: Mapping[str, Any]) -> str | None:
    if _production(values) and values.get("auth_required") and not value:
        return ("not set: the JWT audience is taken from each request's Host header; set it to the URL "
                "clients call, e.g. https://cds.example.org")
    return None


def warn_loopback_http(value: bool, values: Mapping[str, Any]) -> str | None:
    if _production(values) and value:
        return ("plain-http FHIR servers on loopback addresses are allowed, a development aid (no TLS); "
                "set it to false in production")
    return None


def warn_fhir_budget(value: float, values: Mapping[str, Any]) -> str | None:
    per_request = values.get("fhir_timeout_seconds")
    if per_request is not None and value < per_request:
        return (f"{value:g} s is below CDS_FHIR_TIMEOUT_SECONDS ({per_request:g} s): the budget cuts a slow FHIR "
                "request before its own timeout, leaving no time for a retry; raise it or lower "
                "CDS_FHIR_TIMEOUT_SECONDS")
    return None


# --- the environment beyond SETTINGS ----------------------------------------
# Two variables that are not the service's settings but decide whether it
# works: CDS_DATA_DIR (packaging: where the card templates and the OpenAPI
# document are) and PROMETHEUS_MULTIPROC_DIR (prometheus_client's folder).
# Refused or warned about like a setting, one line each, naming the value.

def _env_named(name: str, environ: Mapping[str, str], problem: str) -> str:
    raw = (environ.get(name) or "").strip()
    return f"{name}={raw!r}: {problem}" if raw else f"{name}: {problem}"


def data_dir_problem(environ: Mapping[str, str]) -> str | None:
    from cds_service import data_files

    problem = data_files.problem(environ)
    return _env_named(data_files.ENV, environ, problem) if problem else None


def _sqlite_path(database_url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        url = make_url(database_url)
    except Exception:  # refused by the database_url check itself
        return None
    return url.database if url.get_backend_name() == "sqlite" and url.database else None


def metrics_dir_problem(environ: Mapping[str, str], database_url: str) -> str | None:
    from cds_service import metrics_dir

    path = (environ.get(metrics_dir.ENV) or "").strip()
    if not path:
        return None
    problem = metrics_dir.problem(path, _sqlite_path(database_url))
    return _env_named(metrics_dir.ENV, environ, problem) if problem else None


def metrics_dir_warning(environ: Mapping[str, str]) -> str | None:
    from cds_service import metrics_dir

    path = (environ.get(metrics_dir.ENV) or "").strip()
    warning = metrics_dir.warning(path) if path else None
    return _env_named(metrics_dir.ENV, environ, warning) if warning else None
