"""Every setting of the service, read from the environment.

Each setting is declared once in SETTINGS with its environment name, default,
parser, a one-line description and its checks (cds_service/settings_checks.py:
a value the service cannot use, a file or driver that is missing, a production
warning); the README's settings table is checked against this list by the
tests, so the two cannot drift apart. Every problem is reported at once, one
line each, naming the setting, what is wrong and how to fix it.

Two profiles exist. `production` (the default) is closed: client JWTs are
required and no FHIR server is trusted until configured. `development` opens
what an integration engineer needs to try the service at once against the
public CDS Hooks sandbox (its JWTs trusted, its R4 FHIR server allowed,
plain-http loopback FHIR servers allowed).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from cds_service import settings_checks as checks


class SettingsError(ValueError):
    """Settings the service cannot use: one line per problem (`problems`)."""

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"expected true/false, got {raw!r}")


def _int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise SettingsError(f"expected a whole number, got {raw!r}") from None


def _float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"expected a finite number, got {raw!r}")
    return value


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _str(raw: str) -> str:
    return raw.strip()


def _int_list(raw: str) -> tuple[int, ...]:
    return tuple(_int(part) for part in _csv(raw))


def _vhr_profile(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"us", "nogg"}:
        raise SettingsError(f"expected us or nogg, got {raw!r}")
    return value


def _profile(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"production", "development"}:
        raise SettingsError(f"expected production or development, got {raw!r}")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise SettingsError(f"expected one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return value


MIN_SECRET_LENGTH = 32
# Checked only by the commands that serve hook calls (create_app, `serve`).
SERVING_PROBES = ("CDS_PATIENT_HASH_SECRET",)

# The R4 FHIR server the public CDS Hooks sandbox uses when launched with
# ?fhirServiceUrl=...; allowed only in the development profile.
SANDBOX_FHIR_SERVER = "https://launch.smarthealthit.org/v/r4/fhir"


_SAME = object()  # dev_default marker: the development profile uses the production default


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str  # attribute on Settings
    env: str  # environment variable
    parse: Callable[[str], Any]
    default: Any  # production default
    description: str
    dev_default: Any = _SAME  # development-profile default, if different
    check: checks.Check | None = None  # a value the service cannot use (always refused)
    probe: checks.Check | None = None  # needs files or drivers: run before the server starts
    warn: checks.Check | None = None  # unsafe or useless in production: a start-up warning
    secret: bool = False  # never echo the value in a message


SETTINGS: tuple[Setting, ...] = (
    Setting("profile", "CDS_PROFILE", _profile, "production",
            "`production` (closed by default) or `development` (trusts the public CDS Hooks sandbox, "
            "allows its R4 FHIR server and plain-http loopback FHIR servers)."),
    Setting("database_url", "CDS_DATABASE_URL", _str, "sqlite:///cds_service.db",
            "SQLAlchemy URL of the feedback store: a SQLite file by default, "
            "e.g. `postgresql+psycopg://user@host/db` in production.",
            check=checks.database_url, probe=checks.database_url_usable, secret=True),
    Setting("database_timeout_seconds", "CDS_DATABASE_TIMEOUT_SECONDS", _float, 5.0,
            "Longest wait for the database in a request: connecting (at least 2 s), a pooled connection, "
            "each statement's reply (on PostgreSQL also the server's statement_timeout, and TCP keepalives). "
            "A database that does not answer in time is a 503 with Retry-After; /readyz waits at most 2 s. "
            "Migrations and `cds-service purge` are not bounded. At most 3600.",
            check=checks.database_timeout),
    Setting("auto_migrate", "CDS_AUTO_MIGRATE", _bool, True,
            "Bring the database schema up to date when the app starts (`cds-service migrate` does it on demand). "
            "With `false` the service starts anyway and /readyz answers 503 (`schema_missing`, "
            "`schema_outdated`) until the schema is this release's."),
    Setting("allowed_fhir_servers", "CDS_ALLOWED_FHIR_SERVERS", _csv, (),
            "Comma-separated FHIR base URLs the service may fetch missing prefetch data from. "
            "Nothing else is ever contacted.",
            dev_default=(SANDBOX_FHIR_SERVER,),
            check=checks.fhir_servers),
    Setting("allow_loopback_http", "CDS_ALLOW_LOOPBACK_HTTP", _bool, False,
            "Allow plain-http FHIR servers on loopback addresses (development only; https is required otherwise).",
            dev_default=True, warn=checks.warn_loopback_http),
    Setting("public_base_url", "CDS_PUBLIC_BASE_URL", _str, "",
            "The service's external base URL (e.g. `https://cds.example.org`); the JWT audience is "
            "this plus the endpoint path. Empty: taken from each request's Host.",
            check=checks.base_url, warn=checks.warn_no_base_url),
    Setting("auth_required", "CDS_AUTH_REQUIRED", _bool, True,
            "Require a CDS Hooks client JWT on every call. `false` lets calls through unauthenticated.",
            dev_default=False,
            warn=checks.warn_auth_off),
    Setting("trusted_issuers", "CDS_TRUSTED_ISSUERS", _str, "",
            "Path to a JSON file: issuer -> {\"jwks\": {...}} or {\"jku\": [allowed URLs]}.",
            probe=checks.trusted_issuers, warn=checks.warn_no_issuers),
    Setting("allow_legacy_jwt_algs", "CDS_ALLOW_LEGACY_JWT_ALGS", _bool, False,
            "Also accept ES256 and RS256 client JWTs (CDS Hooks 2.0 asks for ES384/RS384)."),
    Setting("jwt_max_lifetime_seconds", "CDS_JWT_MAX_LIFETIME_SECONDS", _int, 3600,
            "Longest client JWT lifetime accepted (`exp` minus `iat`); a longer-lived token is refused (401). "
            "CDS Hooks recommends at most 300 (the sandbox's); at most 86400.",
            check=checks.jwt_lifetime),
    Setting("patient_hash_secret", "CDS_PATIENT_HASH_SECRET", _str, "",
            "Server secret (at least 32 characters) keying the hash of patient id, fhirServer and the verified "
            "client's issuer stored with each issued card, so feedback can quiet a card for that patient; production refuses to start "
            "without it. Development profile: made once and kept in a file beside the SQLite database.",
            check=checks.min_length(MIN_SECRET_LENGTH, "e.g. `openssl rand -hex 32`"),
            probe=checks.required_in_production(f"at least {MIN_SECRET_LENGTH} characters, e.g. `openssl rand "
                                                "-hex 32`; the Helm chart takes it from a Secret"),
            secret=True),
    Setting("quiet_info_days", "CDS_QUIET_INFO_DAYS", _int, 180,
            "Days an info card stays quiet for a patient after a clinician accepted or overrode it, "
            "unless a new trigger appears (0: never quieted).",
            check=checks.at_least(0)),
    Setting("quiet_warning_days", "CDS_QUIET_WARNING_DAYS", _int, 30,
            "The same for warning cards. Critical cards are never quieted.",
            check=checks.at_least(0)),
    Setting("info_card_budget", "CDS_INFO_CARD_BUDGET", _int, 2,
            "Most info cards per patient-view, highest value first (README, \"Quiet by default\"); "
            "warning and critical cards are never dropped.",
            check=checks.at_least(0)),
    Setting("routine_card_budget", "CDS_ROUTINE_CARD_BUDGET", _int, 1,
            "Most routine info cards (calcium and vitamin D, exercise, falls, lifestyle) per patient-view, "
            "shown only when no drug-decision or test card is; the others wait for a later chart open "
            "(README, \"Quiet by default\"). At or above CDS_INFO_CARD_BUDGET: routine cards compete on "
            "value alone.",
            check=checks.at_least(0)),
    Setting("retention_days", "CDS_RETENTION_DAYS", _int, 730,
            "`cds-service purge` deletes issued cards and feedback older than this many days "
            "(at least the longest quiet period).",
            check=checks.retention),
    Setting("report_token", "CDS_REPORT_TOKEN", _str, "",
            "Bearer token for `GET /admin/report` (the outcome report as JSON); empty turns the endpoint off.",
            secret=True),
    Setting("discovery_open", "CDS_DISCOVERY_OPEN", _bool, False,
            "Serve the discovery document without a JWT even when authentication is required."),
    Setting("cors_origins", "CDS_CORS_ORIGINS", _csv, ("*",),
            "Comma-separated origins allowed by CORS (`*` for any; browser clients such as the sandbox need it), "
            "each as browsers send it: `scheme://host[:port]`, lower case, no path or trailing slash.",
            check=checks.cors_origins),
    Setting("max_body_bytes", "CDS_MAX_BODY_BYTES", _int, 16 * 1024 * 1024,
            "Largest request body accepted, in bytes (413 above it); also the most bytes the FHIR server's "
            "replies to one hook call may add up to (reading stops there and the key fails, 412 if needed).",
            check=checks.at_least(1)),
    Setting("max_prefetch_resources", "CDS_MAX_PREFETCH_RESOURCES", _int, 20000,
            "Most FHIR resources accepted in one request's prefetch, sent or fetched, those of a Bundle within a "
            "Bundle included (413 above it).",
            check=checks.at_least(1)),
    Setting("max_draft_orders", "CDS_MAX_DRAFT_ORDERS", _int, 200,
            "Most draft orders accepted in one order-select/order-sign request (413 above it).",
            check=checks.at_least(1)),
    Setting("max_feedback_entries", "CDS_MAX_FEEDBACK_ENTRIES", _int, 100,
            "Most entries accepted in one feedback request (400 above it).",
            check=checks.at_least(1)),
    Setting("fhir_timeout_seconds", "CDS_FHIR_TIMEOUT_SECONDS", _float, 5.0,
            "Timeout of one outbound FHIR request (connect and read).",
            check=checks.more_than(0, ' s')),
    Setting("fhir_total_timeout_seconds", "CDS_FHIR_TOTAL_TIMEOUT_SECONDS", _float, 15.0,
            "Time budget for all outbound FHIR requests of one hook call, a hard deadline: a reply still "
            "arriving then (however slowly) is cut. Keep it at least CDS_FHIR_TIMEOUT_SECONDS: below it the "
            "service still works, each request cut at the budget and a slow one never retried, and "
            "`cds-service serve` warns.",
            check=checks.more_than(0, ' s'), warn=checks.warn_fhir_budget),
    Setting("fhir_retries", "CDS_FHIR_RETRIES", _int, 2,
            "Retries of an outbound FHIR request after a timeout, connection error or a 429, 500, 502, 503 or 504 answer.",
            check=checks.at_least(0)),
    Setting("fhir_max_pages", "CDS_FHIR_MAX_PAGES", _int, 50,
            "Most Bundle pages read for one prefetch query (the first and those reached by `next` links); "
            "the queries ask for 100 resources a page (`_count`), though a server may send fewer.",
            check=checks.at_least(1)),
    Setting("fhir_max_url_length", "CDS_FHIR_MAX_URL_LENGTH", _int, 8192,
            "Longest URL the service requests or follows from a FHIR server (its queries, Bundle `next` links, "
            "redirects), in characters; at least 4096. `fhirServer` itself may have at most 2048.",
            # The service's own queries reach about 3 kB (the fracture findings code list, from the
            # value sets), plus the server's base URL: below 4096 they could not be fetched.
            check=checks.at_least(4096)),
    Setting("fhir_concurrency", "CDS_FHIR_CONCURRENCY", _int, 4,
            "Prefetch queries of one hook call fetched from the FHIR server at the same time.",
            check=checks.at_least(1)),
    Setting("log_level", "CDS_LOG_LEVEL", _log_level, "INFO", "Log level (DEBUG, INFO, WARNING, ERROR, CRITICAL)."),
    Setting("extra_valuesets_dir", "CDS_EXTRA_VALUESETS_DIR", _str, "",
            "Folder of extra FHIR ValueSet files adding a site's local codes to the shipped value sets "
            "(merged by `url` or `name`; see cds_service/terminology_data/README.md). The reader and the "
            "prefetch templates both use them, so the discovery document changes with the site's codes; "
            "`cds-service discovery` and `cds-service evaluate` read them as the server does. "
            "Empty: shipped sets only.",
            probe=checks.extra_valuesets),
    # Production server (`cds-service serve`, gunicorn); see cds_service/server.py.
    Setting("host", "CDS_HOST", _str, "127.0.0.1",
            "Address the server binds to (`0.0.0.0` in the container image).",
            check=checks.not_empty),
    Setting("port", "CDS_PORT", _int, 8080, "TCP port the server listens on.",
            check=checks.port),
    Setting("workers", "CDS_WORKERS", _int, 2,
            "Server worker processes (each loads its own app and database pool).",
            check=checks.at_least(1)),
    Setting("threads", "CDS_THREADS", _int, 4,
            "Requests one worker process works on at once, of which at most one long chart (a body over "
            "1 MiB); more wait their turn (a connection still sending its request does not count).",
            check=checks.at_least(1)),
    Setting("worker_connections", "CDS_WORKER_CONNECTIONS", _int, 100,
            "Connections one worker holds open at once (idle keep-alive and slow senders included); "
            "further ones wait in the listen queue.",
            check=checks.at_least(1)),
    Setting("max_requests_per_connection", "CDS_MAX_REQUESTS_PER_CONNECTION", _int, 10,
            "A kept-alive connection is closed after this many requests, so each client's connections "
            "spread over the workers (0: never).",
            check=checks.at_least(0)),
    Setting("body_timeout_seconds", "CDS_BODY_TIMEOUT_SECONDS", _int, 30,
            "Time a client has to send a request body once its headers arrived (408 after it); the "
            "headers themselves must arrive within CDS_KEEPALIVE_SECONDS.",
            check=checks.at_least(1, ' s')),
    Setting("request_timeout_seconds", "CDS_REQUEST_TIMEOUT_SECONDS", _int, 30,
            "A worker silent for longer than this is killed and restarted; keep it above "
            "CDS_FHIR_TOTAL_TIMEOUT_SECONDS.",
            check=checks.request_timeout),
    Setting("graceful_timeout_seconds", "CDS_GRACEFUL_TIMEOUT_SECONDS", _int, 20,
            "On SIGTERM, time given to requests in flight to finish before workers are killed.",
            check=checks.at_least(0, ' s')),
    Setting("keepalive_seconds", "CDS_KEEPALIVE_SECONDS", _int, 5,
            "How long an idle HTTP keep-alive connection is held open, and the time a client has to "
            "send a request's headers.",
            check=checks.at_least(1, ' s')),
    Setting("access_log", "CDS_ACCESS_LOG", _bool, False,
            "Also write the server's own access log to stdout (the app already logs one JSON line "
            "per request): client address, method, path without the query string, status, size, time, "
            "user agent; no Referer."),
    # Clinical thresholds the brief leaves to the project (cds_service.rules.settings).
    Setting("fresh_fracture_weeks", "CDS_FRESH_FRACTURE_WEEKS", _int, 12,
            "A fracture this many weeks old or less is \"fresh\" for massage and exercise safety (project choice).",
            check=checks.at_least(0)),
    Setting("recent_fracture_months", "CDS_RECENT_FRACTURE_MONTHS", _int, 12,
            "A fracture this many months old or less makes the patient very high risk (AACE 2020).",
            check=checks.at_least(0)),
    Setting("dxa_duplicate_months", "CDS_DXA_DUPLICATE_MONTHS", _int, 12,
            "A DXA ordered sooner than this many months after the last one is flagged as a duplicate.",
            check=checks.at_least(0)),
    Setting("dxa_interval_months", "CDS_DXA_INTERVAL_MONTHS", _int, 24,
            "Months between DXA scans for patients on therapy or with osteoporosis "
            "(at least CDS_DXA_DUPLICATE_MONTHS).",
            check=checks.all_of(checks.at_least(1),
                                checks.above("dxa_duplicate_months", "CDS_DXA_DUPLICATE_MONTHS", or_equal=True))),
    Setting("osteopenia_dxa_years", "CDS_OSTEOPENIA_DXA_YEARS", _int_list, (2, 3, 5),
            "Repeat-DXA years in untreated osteopenia for lowest T <= -2.0, -1.5 to -1.99, > -1.5 (design choice; "
            "at least 1 each, none shorter than the one before).",
            check=checks.three_numbers),
    Setting("vhr_include_falls", "CDS_VHR_INCLUDE_FALLS", _bool, True,
            "Count a history of injurious falls (a fall with injury, or a fall coded next to a fracture) as very high fracture risk (AACE 2020); a positive fall-risk screen alone does not count."),
    Setting("vhr_profile", "CDS_VHR_PROFILE", _vhr_profile, "us",
            "Very-high-risk criteria: `us` (AACE 2020 plus seed) or `nogg` (adds UK NOGG 2022 criteria)."),
    Setting("dmab_grace_weeks", "CDS_DMAB_GRACE_WEEKS", _int, 4,
            "Weeks after the 6-month denosumab interval before a missed dose is overdue.",
            check=checks.at_least(0)),
    Setting("calcium_lower_mg_dl", "CDS_CALCIUM_LOWER_MG_DL", _float, 8.5,
            "Lower limit of (albumin-corrected) serum calcium, mg/dL.",
            check=checks.more_than(0)),
    Setting("calcium_upper_mg_dl", "CDS_CALCIUM_UPPER_MG_DL", _float, 10.5,
            "Upper limit of (albumin-corrected) serum calcium, mg/dL (above CDS_CALCIUM_LOWER_MG_DL).",
            check=checks.above("calcium_lower_mg_dl", "CDS_CALCIUM_LOWER_MG_DL")),
    Setting("long_term_corticosteroid_days", "CDS_LONG_TERM_CORTICOSTEROID_DAYS", _int, 90,
            "Days on an active systemic corticosteroid after which it counts as long-term (also the 3 months of C-GIOP).",
            check=checks.at_least(0)),
    Setting("kidney_lab_max_age_months", "CDS_KIDNEY_LAB_MAX_AGE_MONTHS", _int, 12,
            "Kidney function (creatinine clearance, eGFR) older than this many months is unknown, never normal.",
            check=checks.at_least(1)),
    Setting("predose_lab_days", "CDS_PREDOSE_LAB_DAYS", _int, 90,
            "Zoledronic acid or denosumab ordered without kidney function and calcium this many days old or less: C-SAFE-PREDOSE-LABS.",
            check=checks.at_least(1)),
    Setting("zoledronate_min_interval_months", "CDS_ZOLEDRONATE_MIN_INTERVAL_MONTHS", _int, 11,
            "Zoledronic acid re-ordered sooner than this many months after the last infusion: C-SAFE-DOSE-INTERVAL.",
            check=checks.at_least(0)),
    Setting("dmab_min_interval_months", "CDS_DMAB_MIN_INTERVAL_MONTHS", _int, 5,
            "Denosumab re-ordered sooner than this many months after the last dose: C-SAFE-DOSE-INTERVAL.",
            check=checks.at_least(0)),
    Setting("recent_surgery_weeks", "CDS_RECENT_SURGERY_WEEKS", _int, 12,
            "Surgery this many weeks ago or less is a post-surgical site for massage and manual therapy.",
            check=checks.at_least(0)),
    Setting("tx_failure_window_months", "CDS_TX_FAILURE_WINDOW_MONTHS", _int, 24,
            "Only a fracture this many months old or less counts as a new fracture on therapy "
            "(C-TX-FAILURE); an older single one was already known and acted on. Two fractures on a "
            "drug still active count whatever their age.",
            check=checks.at_least(1)),
    Setting("done_within_months", "CDS_DONE_WITHIN_MONTHS", _int, 12,
            "Care on record this many months ago or less counts as done and keeps its information card quiet: "
            "a physical-therapy or exercise referral or visit, a fall-risk assessment and its follow-up, a "
            "smoking-cessation referral, a DXA order (README, \"Quiet by default\").",
            check=checks.at_least(1)),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    profile: str
    database_url: str
    auto_migrate: bool
    allowed_fhir_servers: tuple[str, ...]
    allow_loopback_http: bool
    public_base_url: str
    auth_required: bool
    trusted_issuers: str
    allow_legacy_jwt_algs: bool
    report_token: str
    discovery_open: bool
    cors_origins: tuple[str, ...]
    max_body_bytes: int
    max_prefetch_resources: int
    max_draft_orders: int
    max_feedback_entries: int
    fhir_timeout_seconds: float
    fhir_total_timeout_seconds: float
    fhir_retries: int
    fhir_max_pages: int
    fhir_max_url_length: int
    fhir_concurrency: int
    log_level: str
    host: str
    port: int
    workers: int
    threads: int
    worker_connections: int
    max_requests_per_connection: int
    body_timeout_seconds: int
    request_timeout_seconds: int
    graceful_timeout_seconds: int
    keepalive_seconds: int
    access_log: bool
    # Clinical settings: defaults here too, so code that builds Settings by
    # hand keeps working; load_settings always passes them.
    fresh_fracture_weeks: int = 12
    recent_fracture_months: int = 12
    dxa_duplicate_months: int = 12
    dxa_interval_months: int = 24
    osteopenia_dxa_years: tuple[int, ...] = (2, 3, 5)
    vhr_include_falls: bool = True
    vhr_profile: str = "us"
    dmab_grace_weeks: int = 4
    calcium_lower_mg_dl: float = 8.5
    calcium_upper_mg_dl: float = 10.5
    long_term_corticosteroid_days: int = 90
    kidney_lab_max_age_months: int = 12
    predose_lab_days: int = 90
    zoledronate_min_interval_months: int = 11
    dmab_min_interval_months: int = 5
    recent_surgery_weeks: int = 12
    tx_failure_window_months: int = 24
    done_within_months: int = 12
    # Quiet by default (feedback quieting, card budget, retention).
    patient_hash_secret: str = dataclasses.field(default="", repr=False)
    quiet_info_days: int = 180
    quiet_warning_days: int = 30
    info_card_budget: int = 2
    routine_card_budget: int = 1
    retention_days: int = 730
    extra_valuesets_dir: str = ""
    database_timeout_seconds: float = 5.0
    jwt_max_lifetime_seconds: int = 3600

    @property
    def development(self) -> bool:
        return self.profile == "development"


def _named(setting: Setting, raw: Any, problem: str) -> str:
    """One message line: the setting, its value (unless secret), the problem."""
    if setting.secret or not isinstance(raw, str) or not raw:
        return f"{setting.env}: {problem}"
    return f"{setting.env}={raw!r}: {problem}"


def check_serving(settings: Settings) -> None:
    """What the service needs before it answers hook calls, beyond what every
    command needs (create_app calls it; `cds-service serve` runs every probe
    before any worker starts): the probes of SERVING_PROBES, and the data
    files (CDS_DATA_DIR)."""
    problems = _problems(settings, "probe", SERVING_PROBES)
    data_problem = checks.data_dir_problem(os.environ)
    if data_problem:
        problems.append(data_problem)
    if problems:
        raise SettingsError(*problems)


def configure_terminology(settings: Settings) -> None:
    """The start-up step behind every card and discovery document: the value sets
    (the shipped ones plus the site's CDS_EXTRA_VALUESETS_DIR), loaded once and set
    for the whole process. The server (create_app) and every command that evaluates
    or describes cards (`discovery`, `evaluate`) call this one function, so they
    read the same codes; an unusable folder or file stops each of them with the
    line `cds-service serve` gives (the setting's probe): SettingsError."""
    from cds_service.fhir import valuesets

    try:
        valuesets.configure(settings.extra_valuesets_dir or None)
    except valuesets.ValueSetError as exc:
        setting = next(s for s in SETTINGS if s.name == "extra_valuesets_dir")
        raise SettingsError(_named(setting, settings.extra_valuesets_dir, str(exc))) from None


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None,
                  probes: tuple[str, ...] | str = ()) -> Settings:
    """Build Settings from the environment; `overrides` (keyed by env name or
    attribute name) win over the environment. String overrides are parsed
    like environment values; other values are taken as they are.

    Raises SettingsError listing every value that cannot be parsed or fails
    its setting's check, and the problems the probes of the settings named in
    `probes` find ("all": every probe, and the data files and metrics folder
    serving needs, settings_checks' environment checks): the file system and
    installed drivers, for the commands about to use them. Warnings are separate
    (`production_warnings`)."""
    env = dict(os.environ if environ is None else environ)
    given: dict[str, Any] = {}
    by_name = {s.name: s for s in SETTINGS}
    for key, value in (overrides or {}).items():
        setting = by_name.get(key) or next((s for s in SETTINGS if s.env == key), None)
        if setting is None:
            raise SettingsError(f"unknown setting {key!r}")
        given[setting.env] = value

    def raw(setting: Setting) -> Any:
        if setting.env in given:
            return given[setting.env]
        return env.get(setting.env)

    problems: list[str] = []
    profile_raw = raw(SETTINGS[0])
    try:
        profile = _profile(profile_raw) if isinstance(profile_raw, str) else (profile_raw or "production")
    except SettingsError as exc:
        problems.append(_named(SETTINGS[0], profile_raw, str(exc)))
        profile = "production"
    values: dict[str, Any] = {}
    for setting in SETTINGS[1:]:
        value = raw(setting)
        if value is None:
            if profile == "development" and setting.dev_default is not _SAME:
                value = setting.dev_default
            else:
                value = setting.default
        elif isinstance(value, str):
            try:
                value = setting.parse(value)
            except SettingsError as exc:
                problems.append(_named(setting, raw(setting), str(exc)))
                continue
        elif isinstance(value, list):
            value = tuple(value)
        values[setting.name] = value
    values["profile"] = profile
    for setting in SETTINGS:
        if setting.name not in values:
            continue
        wanted = probes == "all" or setting.env in probes
        for check in (setting.check, setting.probe if wanted else None):
            problem = check(values[setting.name], values) if check else None
            if problem:
                problems.append(_named(setting, raw(setting), problem))
                break
    if probes == "all":
        # What serving needs outside the settings (see settings_checks).
        problems += [p for p in (checks.data_dir_problem(env),
                                 checks.metrics_dir_problem(env, values.get("database_url", ""))) if p]
    if problems:
        raise SettingsError(*problems)
    return Settings(**values)


def _problems(settings: Settings, kind: str, only: tuple[str, ...] | None = None) -> list[str]:
    values = dataclasses.asdict(settings)
    out = []
    for setting in SETTINGS:
        check = getattr(setting, kind)
        if check is None or (only is not None and setting.env not in only):
            continue
        problem = check(values[setting.name], values)
        if problem:
            out.append(_named(setting, os.environ.get(setting.env, ""), problem))
    return out


def production_warnings(settings: Settings) -> list[str]:
    """Configurations that work but are unsafe or useless in production."""
    warnings = _problems(settings, "warn")
    metrics_warning = checks.metrics_dir_warning(os.environ)
    return warnings + [metrics_warning] if metrics_warning else warnings


# CDS_ variables read outside SETTINGS: packaging (README, "Settings") and the
# test harness (tests/, .ci/run), which may leave them in a server's environment.
OTHER_VARIABLES = frozenset({"CDS_DATA_DIR", "CDS_REQUIRE_BROWSER", "CDS_CHROMIUM", "CDS_FUZZ_EXAMPLES"})
OTHER_PREFIXES = ("CDS_TEST_",)
# What Kubernetes puts in every pod for each Service of the namespace (service links):
# the chart's own Service "cds-osteoporosis-cds" gives CDS_OSTEOPOROSIS_CDS_SERVICE_HOST,
# CDS_OSTEOPOROSIS_CDS_PORT_80_TCP_ADDR and so on. No setting has such a name.
KUBERNETES_SERVICE_LINK = re.compile(
    r"[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT|PORT_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)")


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per CDS_ environment variable the service does not
    read (a misspelt setting is otherwise silently ignored)."""
    import difflib

    env = os.environ if environ is None else environ
    known = {s.env for s in SETTINGS} | OTHER_VARIABLES
    lines = []
    for name in sorted(env):
        if (not name.startswith("CDS_") or name in known or name.startswith(OTHER_PREFIXES)
                or KUBERNETES_SERVICE_LINK.fullmatch(name)):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f"did you mean {close[0]}? " if close else ""
        lines.append(f"{name}: not a setting of this service, ignored; {hint}"
                     "`cds-service settings` lists them")
    return lines
