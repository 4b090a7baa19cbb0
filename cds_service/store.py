"""Persistence: cards issued, clinician feedback, cards quieted by feedback,
and JWT ids already used.

SQLAlchemy Core over any SQLAlchemy URL: a SQLite file by default, PostgreSQL
in production. No patient identifier is stored: a card is kept as its uuid,
the service and rule that produced it, the hookInstance and a keyed hash of
patient id, fhirServer and client issuer (cds_service.patient_key), so feedback can be tied
to a rule, and to "the same patient" for quieting, without keeping who the
patient is. `purge` deletes what is older than the retention period.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cds_service import db_bounds
from cds_service.db_schema import SchemaState, read_state

log = logging.getLogger(__name__)
T = TypeVar("T")

# What the database raises when it cannot be reached or is busy (stopped,
# restarting, connection lost, pool exhausted): worth trying again later,
# unlike a refused value, which would be refused again (a bug: the request
# schemas keep such values out).
UNAVAILABLE = (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)

metadata = sa.MetaData()

issued_cards = sa.Table(
    "issued_cards",
    metadata,
    sa.Column("card_uuid", sa.String(64), primary_key=True),
    sa.Column("service_id", sa.String(100), nullable=False),
    sa.Column("card_id", sa.String(64), nullable=False),  # rule id, source.topic.code
    sa.Column("indicator", sa.String(16), nullable=False),
    sa.Column("hook_instance", sa.String(128), nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("suggestion_uuids", sa.Text, nullable=False, default="[]"),
    # HMAC of patient id, fhirServer and client issuer; null for cards issued before it existed.
    sa.Column("patient_key", sa.String(64), nullable=True),
    # Who the card was issued to (client_ref: the verified issuer and tenant, or
    # ANONYMOUS): only that client's feedback counts. Null for cards issued before it existed.
    sa.Column("client", sa.String(64), nullable=True),
    # Keyed hashes (patient_key.trigger_key) of the trigger tokens the card rested on, a JSON
    # list; null for cards issued before they were kept (their feedback quiets by date alone).
    sa.Column("trigger_keys", sa.Text, nullable=True),
)
sa.Index("ix_issued_cards_card_id", issued_cards.c.card_id)
sa.Index("ix_issued_cards_issued_at", issued_cards.c.issued_at)  # purge, report --since

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("service_id", sa.String(100), nullable=False),
    sa.Column("card_uuid", sa.String(64), nullable=False),
    sa.Column("card_id", sa.String(64), nullable=True),  # null when the card is unknown
    sa.Column("known_card", sa.Boolean, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("outcome_timestamp", sa.String(64), nullable=False),
    sa.Column("accepted_suggestions", sa.Text, nullable=False, default="[]"),
    sa.Column("override_reason_system", sa.String(255), nullable=True),
    sa.Column("override_reason_code", sa.String(128), nullable=True),
    sa.Column("override_comment", sa.Text, nullable=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    # A resubmitted feedback entry (same card, outcome and time) is not stored twice.
    sa.UniqueConstraint("card_uuid", "outcome", "outcome_timestamp", name="uq_feedback_entry"),
)
sa.Index("ix_feedback_card_id", feedback.c.card_id)
sa.Index("ix_feedback_received_at", feedback.c.received_at)  # purge, report --since

# One row per accepted or overridden card that may quiet its card id for the
# patient (critical cards never do). Read once per patient-view by
# (patient_key, decided_at); rows older than the longest quiet period are purged.
quieted_cards = sa.Table(
    "quieted_cards",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("patient_key", sa.String(64), nullable=False),
    sa.Column("card_id", sa.String(64), nullable=False),
    sa.Column("indicator", sa.String(16), nullable=False),  # as issued: sets the quiet period
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),  # the card acted on: "new trigger" is newer
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),  # feedback received: the period starts
    sa.Column("trigger_keys", sa.Text, nullable=True),  # the card acted on's (issued_cards); null: date alone
)
sa.Index("ix_quieted_cards_patient", quieted_cards.c.patient_key, quieted_cards.c.decided_at)
sa.Index("ix_quieted_cards_decided_at", quieted_cards.c.decided_at)

used_jtis = sa.Table(
    "used_jtis",
    metadata,
    sa.Column("issuer", sa.String(255), primary_key=True),
    sa.Column("jti", sa.String(255), primary_key=True),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
sa.Index("ix_used_jtis_expires_at", used_jtis.c.expires_at)


@dataclasses.dataclass(frozen=True)
class IssuedCard:
    card_uuid: str
    service_id: str
    card_id: str
    indicator: str
    hook_instance: str
    suggestion_uuids: tuple[str, ...] = ()
    patient_key: str | None = None
    client: str | None = None  # client_ref(); ANONYMOUS when None is given
    trigger_keys: tuple[str, ...] | None = None  # keyed trigger tokens (patient_key.trigger_key)


@dataclasses.dataclass(frozen=True)
class QuietMark:
    """Feedback still quieting a card id for one patient."""

    indicator: str        # the most severe indicator the card had when acted on
    issued_on: dt.date    # the newest card acted on was issued that day (UTC)
    # Keyed hashes of the trigger tokens the cards acted on rested on (card_policy: a token not
    # among them is a new trigger); None: feedback on cards issued before they were stored.
    keys: frozenset[str] | None = None


@dataclasses.dataclass(frozen=True)
class PurgeResult:
    issued_cards: int
    feedback: int
    quieted_cards: int


@dataclasses.dataclass(frozen=True)
class FeedbackEntry:
    card_uuid: str
    outcome: str
    outcome_timestamp: str
    accepted_suggestions: tuple[str, ...] = ()
    override_reason_system: str | None = None
    override_reason_code: str | None = None
    override_comment: str | None = None


@dataclasses.dataclass(frozen=True)
class FeedbackResult:
    stored: int
    duplicates: int
    unknown_cards: int  # never issued (by this service) to the client giving the feedback
    card_ids: tuple[str | None, ...] = ()  # rule id per entry, None for an unknown card
    new: tuple[bool, ...] = ()  # per entry: stored now (False: a resubmission, or not stored)
    foreign: int = 0  # of unknown_cards: issued to another client, so not stored at all


class UnknownSuggestion(ValueError):
    """An accepted suggestion id the card never carried (nothing was stored)."""

    def __init__(self, index: int, card_uuid: str, suggestion_id: str):
        super().__init__(f"feedback/{index}/acceptedSuggestions: {suggestion_id!r} is not a suggestion of "
                         f"card {card_uuid}")
        self.index, self.suggestion_id = index, suggestion_id


# The client of a call without a verified JWT (CDS_AUTH_REQUIRED=false).
ANONYMOUS = "anonymous"


def client_ref(issuer: str | None, tenant: str | None) -> str:
    """Who a card is issued to, as the quieting key's namespace sees it: the
    verified issuer and tenant (hashed, to fit the column), or ANONYMOUS."""
    if not issuer:
        return ANONYMOUS
    return hashlib.sha256(json.dumps([issuer, tenant], separators=(",", ":")).encode()).hexdigest()


_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")


def utc_timestamp(value: str) -> str:
    """An RFC 3339 outcomeTimestamp (as the request schema admits it) in one
    spelling, UTC: 2026-01-01T01:00:00+01:00, ...T00:00:00z and ...T00:00:00.000Z
    are all 2026-01-01T00:00:00Z, so a resubmission is one entry whatever its
    spelling. The fraction keeps its digits (trailing zeros dropped). A value
    datetime cannot hold (a leap second, a year shifted out of range) is
    kept as sent, T and Z in upper case."""
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return value
    day, time, fraction, offset = match.groups()
    fraction = (fraction or "").rstrip("0")
    try:
        moment = dt.datetime.fromisoformat(f"{day}T{time}{'+00:00' if offset in 'Zz' else offset}")
        utc = moment.astimezone(dt.timezone.utc)
    except (ValueError, OverflowError):
        return f"{day}T{time}{'.' + fraction if fraction else ''}{offset.upper()}"
    return utc.replace(tzinfo=None).isoformat(timespec="seconds") + (f".{fraction}" if fraction else "") + "Z"


_SEVERITY = ("critical", "warning", "info")  # most severe first, as rules.base.INDICATORS


def _utc_date(value: dt.datetime) -> dt.date:
    # PostgreSQL answers in the session's time zone; SQLite without one (stored as UTC).
    return value.astimezone(dt.timezone.utc).date() if value.tzinfo else value.date()


def _trigger_keys(stored: str | None) -> frozenset[str] | None:
    """A trigger_keys column as a set; None for a row from before they were kept (or not readable)."""
    if stored is None:
        return None
    try:
        keys = json.loads(stored)
    except ValueError:
        return None
    return frozenset(keys) if isinstance(keys, list) and all(isinstance(k, str) for k in keys) else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def make_engine(url: str, timeout: float | None = None) -> Engine:
    """`timeout`: the bound on every wait for the database, in seconds
    (CDS_DATABASE_TIMEOUT_SECONDS; cds_service.db_bounds). None: libpq's and
    the pool's own (the commands that migrate or purge, which may take long)."""
    # No pool_pre_ping: it cost a round trip on every checkout, doubling the
    # hook call's two (the quieting lookup, the issued-cards insert). A pooled
    # connection found dead is retried instead (Store._retrying).
    kwargs: dict[str, Any] = {"future": True}
    bounds = db_bounds.engine_options(sa.engine.make_url(url), timeout) if timeout is not None else {}
    if url.startswith("sqlite"):
        # Flask serves requests on several threads; one SQLite file is shared.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if sa.engine.make_url(url).database not in (None, "", ":memory:"):
            # One connection per process: threads then queue for it in the pool
            # instead of meeting SQLite's file lock, whose busy handler sleeps
            # for milliseconds at a time (it halved throughput under load).
            kwargs.update(pool_size=1, max_overflow=0)
    if url.startswith("postgresql"):
        # An unreachable server is an error within seconds, not a request
        # held until the client gives up.
        kwargs["connect_args"] = {"connect_timeout": 5}
    if bounds:
        kwargs["connect_args"] = {**kwargs.get("connect_args", {}), **bounds.pop("connect_args", {})}
        kwargs.update(bounds)
    engine = sa.create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    if timeout is not None:
        db_bounds.install(engine, timeout)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL with synchronous=NORMAL: a commit no longer waits for an fsync
    (which cost ~10 ms on every hook call that issued cards); the database stays
    consistent after a crash, and at worst the last few issued-card rows are
    lost (their feedback is then flagged unknown). WAL also lets the workers
    read while one writes. An in-memory database ignores WAL."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def quiet_query(patient_key: str, quiet_days: dict[str, int], now: dt.datetime) -> sa.Select | None:
    """The one query per patient-view, served by ix_quieted_cards_patient, with
    its parameters bound (for EXPLAIN and tests; Store runs the same statement)."""
    statement = _quiet_statement(tuple(ind for ind, days in quiet_days.items() if days > 0))
    if statement is None:
        return None
    return statement.params(_quiet_params(patient_key, quiet_days, now))


@functools.lru_cache(maxsize=8)
def _quiet_statement(indicators: tuple[str, ...]) -> sa.Select | None:
    """Built once per set of quieting indicators, with bound parameters (Store
    compiles it once per dialect)."""
    if not indicators:
        return None
    q = quieted_cards.c
    return (
        sa.select(q.card_id, q.indicator, sa.func.max(q.issued_at), q.trigger_keys)
        .where(q.patient_key == sa.bindparam("patient_key"),
               q.decided_at >= sa.bindparam("oldest", type_=q.decided_at.type),
               sa.or_(*(sa.and_(q.indicator == ind, q.decided_at >= sa.bindparam(f"since_{ind}", type_=q.decided_at.type))
                        for ind in indicators)))
        .group_by(q.card_id, q.indicator, q.trigger_keys)
    )


def _quiet_params(patient_key: str, quiet_days: dict[str, int], now: dt.datetime) -> dict[str, Any]:
    cutoffs = {f"since_{ind}": now - dt.timedelta(days=days) for ind, days in quiet_days.items() if days > 0}
    return {"patient_key": patient_key, "oldest": min(cutoffs.values()), **cutoffs}


def _insert_statement(count: int) -> sa.Insert:
    """One INSERT of `count` issued cards (one VALUES row each, parameters
    named column_i): a single statement, so atomic by itself, even in
    autocommit (one round trip on a database server). Built only when a
    Store first compiles it for that count (Store._compiled keeps the result)."""
    return issued_cards.insert().values([
        {c.name: sa.bindparam(f"{c.name}_{i}", type_=c.type) for c in issued_cards.c} for i in range(count)])


class _Compiled:
    """A statement compiled once for one dialect, run on a DBAPI cursor
    without SQLAlchemy's per-execution machinery (its Connection, execution
    context and Result cost more CPU than the query on SQLite). Values pass
    through the same type processors SQLAlchemy applies, so datetimes are
    stored and read exactly as through a Connection."""

    def __init__(self, statement: sa.Select | sa.Insert, dialect: sa.Dialect):
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positions = compiled.positiontup  # None for a named paramstyle (psycopg)
        # Values fixed in the statement (e.g. the quieting indicators).
        self.fixed: dict[str, Any] = {}
        self.bind_processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            if not bind.required:
                self.fixed[name] = bind.effective_value
            elif bind.key != name:  # values are passed by the names given to bindparam()
                raise ValueError(f"bind parameter {bind.key!r} compiled as {name!r}")
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.bind_processors[name] = processor
        self.returns_rows = isinstance(statement, sa.Select)
        self.result_processors = [col.type.dialect_impl(dialect).result_processor(dialect, None)
                                  for col in statement.selected_columns] if self.returns_rows else []

    def parameters(self, params: dict[str, Any]) -> dict[str, Any] | list[Any]:
        values = {**self.fixed, **params}
        for name, processor in self.bind_processors.items():
            values[name] = processor(values[name])
        return values if self.positions is None else [values[name] for name in self.positions]

    def rows(self, rows: list[Any]) -> list[tuple[Any, ...]]:
        processors = self.result_processors
        if not any(processors):
            return [tuple(row) for row in rows]
        return [tuple(p(v) if p else v for p, v in zip(processors, row, strict=True)) for row in rows]


class Lease:
    """A pooled connection lent to a hook call's statements in turn
    (Store.lease): checked out by the first statement, returned on close.
    Each statement still commits before it returns, as on a connection of
    its own. A statement that fails gives its connection back (a dead one
    invalidated first, as Store._execute does), so the next statement, or
    Store._retrying's second try, checks out another. Not for use by two
    requests at once.

    Between the statements the connection stays checked out while the
    rules run. On SQLite the pool holds one connection per process, so
    another request's statement waits for the lease to close; under the
    production gevent worker the rules never yield, so nothing waits that
    would otherwise have run."""

    __slots__ = ("_store", "pooled")

    def __init__(self, store: Store):
        self._store = store
        self.pooled: Any = None

    def close(self) -> None:
        pooled, self.pooled = self.pooled, None
        if pooled is not None:
            self._store._release(pooled)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class Store:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._local = engine.dialect.name == "sqlite"
        self._compiled_forms: dict[Any, _Compiled] = {}

    @classmethod
    def from_url(cls, url: str, timeout: float | None = None) -> "Store":
        return cls(make_engine(url, timeout))

    def _compiled(self, key: Any, statement: Callable[[], sa.Select | sa.Insert]) -> _Compiled:
        compiled = self._compiled_forms.get(key)
        if compiled is None:
            compiled = self._compiled_forms[key] = _Compiled(statement(), self.engine.dialect)
        return compiled

    def lease(self) -> Lease:
        """One pooled connection for the statements of one hook call (the
        quieting lookup, then the issued-cards insert), checked out at the
        first and returned when the lease closes (a `with` block): one pool
        checkout and return a call instead of two. See Lease."""
        return Lease(self)

    def _execute(self, compiled: _Compiled, params: dict[str, Any], write: bool,
                 lease: Lease | None = None) -> list[tuple[Any, ...]]:
        """Run one statement on a pooled DBAPI connection (the lease's, when
        given), committed before this returns. On a database server it runs in autocommit: no BEGIN,
        COMMIT or ROLLBACK round trips (the pool's rollback on return is then
        none either: the driver sends none outside a transaction). On SQLite
        a write commits its implicit transaction; a read opens none.

        Driver errors are raised as SQLAlchemy raises them (so the callers'
        503 and Store._retrying work unchanged): a connection found dead is
        invalidated with every connection of its generation, as SQLAlchemy
        does, so that the retry connects anew."""
        dialect = self.engine.dialect
        dbapi_error = dialect.loaded_dbapi.Error
        parameters = compiled.parameters(params)
        pooled = lease.pooled if lease is not None else None
        kept = pooled is not None  # already checked out and set up by an earlier statement
        if not kept:
            try:
                pooled = self.engine.raw_connection()
            except dbapi_error as exc:
                raise self._wrapped(exc, compiled, parameters, dialect.is_disconnect(exc, None, None)) from exc
        connection, cursor = pooled.dbapi_connection, None
        done = False
        try:
            if not self._local and not kept:
                # What execution_options(isolation_level="AUTOCOMMIT") does,
                # for any driver (psycopg: an attribute, no round trip).
                dialect.set_isolation_level(connection, "AUTOCOMMIT")
            cursor = connection.cursor()
            cursor.execute(compiled.sql, parameters)
            rows = compiled.rows(cursor.fetchall()) if compiled.returns_rows else []
            if write and self._local:
                connection.commit()
            done = True
            return rows
        except dbapi_error as exc:
            disconnected = dialect.is_disconnect(exc, connection, cursor)
            if disconnected:
                # What Connection does on a disconnect (no public equivalent):
                # connections older than this one are replaced on checkout.
                self.engine.pool._invalidate(pooled, exc)
            raise self._wrapped(exc, compiled, parameters, disconnected) from exc
        except BaseException as exc:
            if not isinstance(exc, Exception):
                # Interrupted mid-statement (a gevent Timeout, the worker
                # stopping): the connection's state is unknown, so it is not
                # reused (as SQLAlchemy does).
                pooled.invalidate(exc)
            raise
        finally:
            if done and lease is not None and pooled.is_valid:
                # Kept for the lease's next statement: nothing is pending (a
                # write committed, a read on SQLite opened no transaction).
                cursor.close()
                lease.pooled = pooled
            else:
                if lease is not None:
                    lease.pooled = None  # a failed statement's connection is not reused
                self._release(pooled, cursor)

    def _release(self, pooled: Any, cursor: Any = None) -> None:
        try:
            if pooled.is_valid:
                if cursor is not None:
                    cursor.close()
                if not self._local:
                    self.engine.dialect.reset_isolation_level(pooled.dbapi_connection)  # as the pool hands it out
        finally:
            pooled.close()  # back to the pool (its rollback: none pending here)

    def _wrapped(self, exc: Exception, compiled: _Compiled, parameters: Any, disconnected: bool) -> sa.exc.DBAPIError:
        dialect = self.engine.dialect
        return sa.exc.DBAPIError.instance(compiled.sql, parameters, exc, dialect.loaded_dbapi.Error,
                                          hide_parameters=self.engine.hide_parameters,
                                          connection_invalidated=disconnected, dialect=dialect)

    @staticmethod
    def _retrying(work: Callable[[], T], then: Callable[[], T] | None = None) -> T:
        """Run `work` (or `then`) once more when it failed on a pooled
        connection that had died (the database restarted since it was last
        used): SQLAlchemy has then dropped the pool's old connections, so the
        second try connects anew. A database that is down fails both tries
        (the caller's 503)."""
        try:
            return work()
        except sa.exc.DBAPIError as exc:
            # A database that did not answer in time is hung, not restarted:
            # trying again would only wait as long again.
            if not exc.connection_invalidated or isinstance(exc.orig, db_bounds.DatabaseTimeout):
                raise
        return (then or work)()

    def create_schema(self) -> None:
        """Bring the schema up to date the one way the service does it: the
        Alembic migrations (with their lock against concurrent starts)."""
        from cds_service import migrations  # migrations' env imports this module

        migrations.upgrade(self.engine)

    def ping(self) -> bool:
        return self.schema_state() is not None

    def schema_state(self) -> SchemaState | None:
        """The schema's revision against this release's (cds_service.db_schema),
        one statement; None when the database is not reachable."""
        def read() -> SchemaState:
            with self.engine.connect() as conn:
                return read_state(conn)

        try:
            return self._retrying(read)
        except Exception:  # any driver error means "not ready"
            log.warning("database not reachable", exc_info=False)
            return None

    # --- cards -------------------------------------------------------------
    def record_cards(self, cards: Sequence[IssuedCard], lease: Lease | None = None) -> None:
        """One multi-row INSERT, committed before this returns (on a database
        server: one round trip). On the lease's connection, when given."""
        if not cards:
            return
        now = _now()
        rows = [
            {
                "card_uuid": c.card_uuid,
                "service_id": c.service_id,
                "card_id": c.card_id,
                "indicator": c.indicator,
                "hook_instance": c.hook_instance,
                "issued_at": now,
                "suggestion_uuids": json.dumps(list(c.suggestion_uuids)),
                "patient_key": c.patient_key,
                "client": ANONYMOUS if c.client is None else c.client,
                "trigger_keys": None if c.trigger_keys is None else json.dumps(sorted(c.trigger_keys)),
            }
            for c in cards
        ]

        compiled = self._compiled(("insert", len(rows)), lambda: _insert_statement(len(rows)))
        params = {f"{name}_{i}": value for i, row in enumerate(rows) for name, value in row.items()}

        def insert() -> None:
            self._execute(compiled, params, write=True, lease=lease)

        def insert_again() -> None:
            try:
                insert()
            except IntegrityError:
                # The first try's commit had gone through before its
                # connection dropped: the rows are there.
                if self.card(rows[0]["card_uuid"]) is None:
                    raise

        self._retrying(insert, then=insert_again)

    def card(self, card_uuid: str) -> dict[str, Any] | None:
        def read() -> Any:
            with self.engine.connect() as conn:
                return conn.execute(
                    sa.select(issued_cards).where(issued_cards.c.card_uuid == card_uuid)
                ).mappings().first()

        row = self._retrying(read)
        return dict(row) if row else None

    # --- feedback ----------------------------------------------------------
    def store_feedback(self, service_id: str, entries: Sequence[FeedbackEntry],
                       client: str = ANONYMOUS) -> FeedbackResult:
        """Store the entries of one feedback request in one transaction (all
        or nothing), and return counts. `client`: who gives the feedback
        (client_ref of the verified JWT).

        Returns only after the commit. A duplicate (same card, outcome and
        timestamp, the timestamp in UTC, also within the request) is skipped
        by the unique constraint, so two replicas receiving the same
        resubmission cannot both store it.

        An entry for a card issued to another client is not stored (nor could
        it then pre-empt that client's own entry as its "duplicate"): it counts
        as an unknown card. An accepted suggestion the card never carried
        raises UnknownSuggestion before anything is stored.

        An accepted or overridden card that is not critical, was issued to
        this client (cards issued before the client was recorded quiet
        nothing: anyone might be giving the feedback) and for a known patient
        also gets a quieted_cards row, in the same transaction as its feedback
        (once, however often it is resent)."""
        received = _now()
        # Retried whole on a dead pooled connection: an entry already stored
        # is skipped by the unique constraint, so nothing is stored twice.
        return self._retrying(lambda: self._store_feedback(service_id, entries, received, client))

    def _store_feedback(self, service_id: str, entries: Sequence[FeedbackEntry],
                        received: dt.datetime, client: str) -> FeedbackResult:
        with self.engine.begin() as conn:
            uuids = sorted({e.card_uuid for e in entries})
            issued = {row.card_uuid: row for row in conn.execute(
                sa.select(issued_cards.c.card_uuid, issued_cards.c.service_id, issued_cards.c.card_id,
                          issued_cards.c.indicator, issued_cards.c.patient_key, issued_cards.c.issued_at,
                          issued_cards.c.client, issued_cards.c.suggestion_uuids, issued_cards.c.trigger_keys)
                .where(issued_cards.c.card_uuid.in_(uuids))
            )} if uuids else {}
            # Issued to another client, by any service: not stored (a stored row
            # would take the place of that client's own entry as its "duplicate").
            foreign = {u for u, row in issued.items() if row.client is not None and row.client != client}
            # A card another service issued is unknown to this one: its feedback is
            # stored, flagged, and quiets nothing (an EHR posting to the wrong endpoint).
            issued = {u: row for u, row in issued.items() if u not in foreign and row.service_id == service_id}
            for index, entry in enumerate(entries):
                card = issued.get(entry.card_uuid)
                if card is not None and entry.accepted_suggestions:
                    offered = set(json.loads(card.suggestion_uuids or "[]"))
                    for suggestion in entry.accepted_suggestions:
                        if suggestion not in offered:
                            raise UnknownSuggestion(index, entry.card_uuid, suggestion)
            new = []
            for entry in entries:
                if entry.card_uuid in foreign:
                    new.append(False)
                    continue
                card = issued.get(entry.card_uuid)
                inserted = self._insert_feedback(conn, {
                    "service_id": service_id,
                    "card_uuid": entry.card_uuid,
                    "card_id": card.card_id if card else None,
                    "known_card": card is not None,
                    "outcome": entry.outcome,
                    "outcome_timestamp": utc_timestamp(entry.outcome_timestamp),
                    "accepted_suggestions": json.dumps(list(entry.accepted_suggestions)),
                    "override_reason_system": entry.override_reason_system,
                    "override_reason_code": entry.override_reason_code,
                    "override_comment": entry.override_comment,
                    "received_at": received,
                })
                new.append(inserted)
                if (inserted and card is not None and card.patient_key is not None and card.client is not None
                        and card.indicator != "critical" and entry.outcome in ("accepted", "overridden")):
                    conn.execute(quieted_cards.insert(), [{
                        "patient_key": card.patient_key, "card_id": card.card_id, "indicator": card.indicator,
                        "issued_at": card.issued_at, "decided_at": received, "trigger_keys": card.trigger_keys,
                    }])
        card_ids = tuple(issued[e.card_uuid].card_id if e.card_uuid in issued else None for e in entries)
        ignored = sum(e.card_uuid in foreign for e in entries)
        return FeedbackResult(stored=sum(new), duplicates=len(new) - sum(new) - ignored,
                              unknown_cards=sum(card_id is None for card_id in card_ids),
                              card_ids=card_ids, new=tuple(new), foreign=ignored)

    @staticmethod
    def _insert_feedback(conn: sa.Connection, row: dict[str, Any]) -> bool:
        """Insert one row unless it is a duplicate; True if inserted. Inside
        the caller's transaction: a duplicate must not abort the others.

        The same entry first sent to another service's feedback endpoint was
        stored as for an unknown card; sent then to the service that issued
        the card, it is that card's feedback, not a duplicate: the stored row
        takes this service, card id and known flag (and True is returned, so
        it counts and quiets as a new entry). Before, the right entry was
        dropped as a duplicate of the misrouted one (operator review 16)."""
        unique = ["card_uuid", "outcome", "outcome_timestamp"]
        known = {"service_id": row["service_id"], "card_id": row["card_id"], "known_card": True}
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(feedback).values(row)
            if row["known_card"]:
                insert = insert.on_conflict_do_update(index_elements=unique, set_=known,
                                                      where=feedback.c.known_card == sa.false())
            else:
                insert = insert.on_conflict_do_nothing(index_elements=unique)
            return conn.execute(insert.returning(feedback.c.id)).first() is not None
        try:  # other databases: a savepoint per row
            with conn.begin_nested():
                conn.execute(feedback.insert().values(row))
            return True
        except IntegrityError:
            if not row["known_card"]:
                return False
            same = sa.and_(*(feedback.c[name] == row[name] for name in unique), feedback.c.known_card == sa.false())
            return conn.execute(feedback.update().where(same).values(**known)).rowcount > 0

    def feedback_rows(self, card_uuid: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(feedback).order_by(feedback.c.id)
        if card_uuid is not None:
            query = query.where(feedback.c.card_uuid == card_uuid)

        def read() -> list[dict[str, Any]]:
            with self.engine.connect() as conn:
                return [dict(r) for r in conn.execute(query).mappings()]

        return self._retrying(read)

    # --- quieting ----------------------------------------------------------
    def quiet_marks(self, patient_key: str, quiet_days: dict[str, int],
                    now: dt.datetime | None = None, lease: Lease | None = None) -> dict[str, QuietMark]:
        """Card id -> QuietMark for feedback on this patient's cards still
        within its quiet period (`quiet_days`: indicator -> days; an indicator
        absent or at 0 never quiets). One query on (patient_key, decided_at)."""
        indicators = tuple(ind for ind, days in quiet_days.items() if days > 0)
        if not indicators:
            return {}
        compiled = self._compiled(("quiet", indicators), lambda: _quiet_statement(indicators))
        params = _quiet_params(patient_key, quiet_days, now or _now())

        def read() -> list[Any]:
            return self._execute(compiled, params, write=False, lease=lease)

        marks: dict[str, QuietMark] = {}
        for card_id, indicator, issued_at, stored_keys in self._retrying(read):
            issued_on = _utc_date(issued_at)
            keys = _trigger_keys(stored_keys)
            old = marks.get(card_id)
            if old is not None:
                indicator = min(indicator, old.indicator, key=_SEVERITY.index)
                issued_on = max(issued_on, old.issued_on)
                # Every trigger the cards acted on rested on; rows from before the keys were kept add none.
                keys = old.keys if keys is None else keys if old.keys is None else keys | old.keys
            marks[card_id] = QuietMark(indicator=indicator, issued_on=issued_on, keys=keys)
        return marks

    # --- retention ---------------------------------------------------------
    def purge(self, older_than: dt.datetime, quiet_older_than: dt.datetime, batch: int = 5000) -> PurgeResult:
        """Delete issued cards and feedback from before `older_than`, and
        quieting rows from before `quiet_older_than`, in batches so that a
        first purge of years of rows never holds long locks."""
        counts = {}
        for table, column, key, cutoff in (
            (issued_cards, issued_cards.c.issued_at, issued_cards.c.card_uuid, older_than),
            (feedback, feedback.c.received_at, feedback.c.id, older_than),
            (quieted_cards, quieted_cards.c.decided_at, quieted_cards.c.id, quiet_older_than),
        ):
            total = 0
            while True:
                chosen = sa.select(key).where(column < cutoff).limit(batch).scalar_subquery()
                with self.engine.begin() as conn:
                    deleted = conn.execute(table.delete().where(key.in_(chosen))).rowcount
                total += deleted
                if deleted < batch:
                    break
            counts[table.name] = total
        return PurgeResult(**counts)

    # --- JWT replay protection --------------------------------------------
    def remember_jti(self, issuer: str, jti: str, expires_at: dt.datetime) -> bool:
        """True if this (issuer, jti) is new; False if it was seen before.

        The primary key makes the check atomic across replicas sharing the
        database. Expired ids are swept first so the table stays small."""
        now = _now()

        def remember() -> None:
            with self.engine.begin() as conn:
                conn.execute(used_jtis.delete().where(used_jtis.c.expires_at < now))
                conn.execute(used_jtis.insert(), [{"issuer": issuer, "jti": jti, "expires_at": expires_at}])

        try:
            self._retrying(remember)
            return True
        except IntegrityError:
            return False
