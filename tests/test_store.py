"""Storage on SQLite and, when CDS_TEST_POSTGRES_URL is set (as .ci/run does
when a server answers), on a real PostgreSQL: each test gets its own schema."""

from __future__ import annotations

import dataclasses
import datetime as dt
import multiprocessing
import os
import uuid

import pytest
import sqlalchemy as sa

from cds_service.store import FeedbackEntry, IssuedCard, Store

PG_URL = os.environ.get("CDS_TEST_POSTGRES_URL")


def _pg_store(schema: str) -> Store:
    engine = sa.create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"}, future=True)
    return Store(engine)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """Yields (url-or-schema, store) on a clean database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
        store = Store.from_url(url)
        store.create_schema()
        yield ("sqlite", url), store
        return
    if not PG_URL:
        # Say why truthfully: the variable is what is missing, whether or not a
        # server happens to answer (.ci/run sets it when one does).
        pytest.skip("CDS_TEST_POSTGRES_URL is not set, so the PostgreSQL variant does not run (e.g. "
                    "CDS_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, future=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    store = _pg_store(schema)
    store.create_schema()
    try:
        yield ("postgresql", schema), store
    finally:
        store.engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _card(rule="C-TX-BP"):
    return IssuedCard(card_uuid=str(uuid.uuid4()), service_id="osteoporosis-patient-view", card_id=rule,
                      indicator="info", hook_instance=str(uuid.uuid4()), suggestion_uuids=("s1",))


def test_cards_and_feedback_round_trip(db):
    _, store = db
    card = _card()
    store.record_cards([card])
    result = store.store_feedback("osteoporosis-patient-view", [
        FeedbackEntry(card.card_uuid, "accepted", "2026-01-01T00:00:00Z", ("s1",)),
        FeedbackEntry(str(uuid.uuid4()), "overridden", "2026-01-01T00:00:00Z", (), "sys", "declined", "no"),
    ])
    assert (result.stored, result.duplicates, result.unknown_cards) == (2, 0, 1)
    rows = store.feedback_rows()
    assert [r["card_id"] for r in rows] == ["C-TX-BP", None]
    assert rows[1]["override_reason_code"] == "declined"


def test_duplicate_feedback_is_detected(db):
    _, store = db
    entry = FeedbackEntry(str(uuid.uuid4()), "overridden", "2026-01-01T00:00:00Z")
    assert store.store_feedback("s", [entry]).stored == 1
    assert store.store_feedback("s", [entry]).duplicates == 1
    assert len(store.feedback_rows()) == 1


def test_jti_is_remembered_once(db):
    _, store = db
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5)
    assert store.remember_jti("iss", "j1", later) is True
    assert store.remember_jti("iss", "j1", later) is False
    assert store.remember_jti("other-iss", "j1", later) is True


def _writer(kind: str, target: str, worker: int, count: int) -> None:
    store = Store.from_url(target) if kind == "sqlite" else _pg_store(target)
    entries = [FeedbackEntry(f"card-{worker}-{i}", "overridden", "2026-01-01T00:00:00Z") for i in range(count)]
    # Every worker also resubmits one shared entry: exactly one copy may survive.
    entries.append(FeedbackEntry("shared-card", "overridden", "2026-01-01T00:00:00Z"))
    store.store_feedback("osteoporosis-patient-view", entries)


def test_feedback_from_several_processes_loses_nothing(db):
    (kind, target), store = db
    workers, count = 4, 25
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(kind, target, w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = store.feedback_rows()
    assert len(rows) == workers * count + 1
    assert len({r["card_uuid"] for r in rows}) == workers * count + 1


def test_migrations_build_exactly_the_declared_schema(db):
    """Alembic's head equals store.metadata on this database: nothing to autogenerate."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from cds_service import migrations
    from cds_service.store import metadata

    (kind, target), _ = db
    engine = sa.create_engine(target) if kind == "sqlite" else _pg_store(target).engine
    if kind == "sqlite":
        engine = sa.create_engine(target.replace("store.db", "migrated.db"))
    else:
        with engine.begin() as conn:
            for table in [*metadata.tables, "alembic_version"]:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    assert migrations.upgrade(engine) == migrations.head_revision()
    assert migrations.upgrade(engine) == migrations.head_revision()  # idempotent
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []
    assert migrations.current_revision(engine) == migrations.head_revision()


def _create_in_process(urls: list[str], barrier) -> None:
    # What each worker's create_app does on start-up (CDS_AUTO_MIGRATE), on each new
    # database in turn; the barrier starts every process's attempt at the same moment.
    from cds_service import migrations

    for url in urls:
        barrier.wait(timeout=60)
        migrations.upgrade(Store.from_url(url).engine)


def test_workers_starting_together_on_a_new_sqlite_file(tmp_path):
    # gunicorn starts its workers at once; each creates the schema on a new
    # database. A worker that loses the CREATE race must still start. Four
    # processes (imported once) race on six new files, released together each time.
    urls = [f"sqlite:///{tmp_path}/race-{attempt}.db" for attempt in range(6)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_create_in_process, args=(urls, barrier)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]


def test_sqlite_uses_wal_without_fsync_per_commit(tmp_path):
    store = Store.from_url(f"sqlite:///{tmp_path}/wal.db")
    store.create_schema()
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(sa.text("PRAGMA synchronous")).scalar() == 1  # NORMAL


def test_quieting_lookup_is_one_indexed_query(tmp_path):
    """The per-patient-view read goes through (patient_key, decided_at), not a scan."""
    from cds_service.store import quiet_query

    store = Store.from_url(f"sqlite:///{tmp_path}/plan.db")
    store.create_schema()
    query = quiet_query("a" * 64, {"info": 180, "warning": 30}, dt.datetime.now(dt.timezone.utc))
    sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
    with store.engine.connect() as conn:
        plan = " ".join(str(row) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "USING INDEX ix_quieted_cards_patient" in plan
    assert quiet_query("a" * 64, {"info": 0, "warning": 0}, dt.datetime.now(dt.timezone.utc)) is None


def test_quiet_marks_take_the_newest_card_and_the_most_severe_indicator(db):
    from cds_service.store import QuietMark, quieted_cards

    _, store = db
    now = dt.datetime.now(dt.timezone.utc)
    rows = [("k1", "C-X", "info", 40, 10), ("k1", "C-X", "warning", 20, 5), ("k1", "C-Y", "info", 300, 200),
            ("k1", "C-Z", "warning", 50, 40), ("k2", "C-X", "info", 1, 1)]
    with store.engine.begin() as conn:
        conn.execute(quieted_cards.insert(), [
            {"patient_key": k, "card_id": c, "indicator": i, "issued_at": now - dt.timedelta(days=issued),
             "decided_at": now - dt.timedelta(days=decided)} for k, c, i, issued, decided in rows])
    marks = store.quiet_marks("k1", {"info": 180, "warning": 30}, now)
    # C-Y's feedback is past 180 days, C-Z's warning past 30.
    assert marks == {"C-X": QuietMark("warning", (now - dt.timedelta(days=20)).date())}


def test_recording_a_calls_cards_is_all_or_nothing(db):
    """One multi-row INSERT: a refused row leaves none of the call's cards."""
    _, store = db
    first = _card()
    store.record_cards([first])
    fresh = [_card(), _card()]
    with pytest.raises(sa.exc.IntegrityError):
        store.record_cards([*fresh, dataclasses.replace(_card(), card_uuid=first.card_uuid)])
    assert [store.card(c.card_uuid) for c in fresh] == [None, None]
    store.record_cards(fresh)
    assert [store.card(c.card_uuid)["card_id"] for c in fresh] == ["C-TX-BP", "C-TX-BP"]


@pytest.mark.skipif(not PG_URL, reason="CDS_TEST_POSTGRES_URL is not set")
def test_a_pooled_connection_the_server_dropped_is_replaced_not_an_error():
    """No ping before each use (it cost a round trip per statement): a
    connection that died in the pool (server restart, idle timeout) is found
    on use and the work runs again on a new one."""
    from cds_service.store import make_engine

    schema = f"t_{uuid.uuid4().hex[:12]}"
    name = f"cds-{schema}"
    admin = sa.create_engine(PG_URL, future=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}",
                                                         "application_name": name})
    store = Store(make_engine(url.render_as_string(hide_password=False)))

    def drop_connections() -> int:
        with admin.begin() as conn:
            return len(conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": name}).all())

    try:
        store.create_schema()
        card = _card()
        steps = [
            lambda: store.record_cards([card]),
            lambda: store.quiet_marks("k", {"info": 180}),
            lambda: store.store_feedback("svc", [FeedbackEntry(card.card_uuid, "accepted", "2026-01-01T00:00:00Z")]),
            lambda: store.remember_jti("iss", str(uuid.uuid4()), dt.datetime.now(dt.timezone.utc)),
            lambda: store.card(card.card_uuid),
            store.ping,
        ]
        for step in steps:
            with store.engine.connect(), store.engine.connect():
                pass  # two connections in the pool: the retry must not be handed the other dead one
            assert drop_connections() == 2
            assert step() is not False
        assert store.card(card.card_uuid)["card_id"] == "C-TX-BP"
        assert [r["outcome"] for r in store.feedback_rows()] == ["accepted"]
    finally:
        store.engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_cards_written_and_read_by_either_path_are_the_same(db, monkeypatch):
    """record_cards and quiet_marks run their SQL on the DBAPI connection; what
    they store and read is what SQLAlchemy's Connection stores and reads
    (SQLite keeps datetimes as text: the same text)."""
    from cds_service import store as store_module
    from cds_service.store import QuietMark, issued_cards

    _, store = db
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(store_module, "_now", lambda: when)
    fast = dataclasses.replace(_card("C-FAST"), patient_key="k1", client="anonymous")
    old = dataclasses.replace(_card("C-OLD"), patient_key="k1", client="anonymous")
    store.record_cards([fast])
    with store.engine.begin() as conn:
        conn.execute(issued_cards.insert(), [{**dataclasses.asdict(old), "issued_at": when,
                                              "suggestion_uuids": '["s1"]'}])
    with store.engine.connect() as conn:
        stored = dict(conn.exec_driver_sql("SELECT card_uuid, issued_at FROM issued_cards").all())
    assert stored[fast.card_uuid] == stored[old.card_uuid]
    read_fast, read_old = store.card(fast.card_uuid), store.card(old.card_uuid)
    assert read_fast["issued_at"] == read_old["issued_at"]
    assert read_fast["issued_at"].replace(tzinfo=dt.timezone.utc) == when
    assert {k: v for k, v in read_fast.items() if k not in ("card_uuid", "card_id", "hook_instance")} == \
        {k: v for k, v in read_old.items() if k not in ("card_uuid", "card_id", "hook_instance")}
    # Feedback (SQLAlchemy) copies each card's issued_at into quieted_cards; the lookup reads it back.
    store.store_feedback("osteoporosis-patient-view", [
        FeedbackEntry(c.card_uuid, "accepted", "2026-03-04T06:00:00Z") for c in (fast, old)])
    marks = store.quiet_marks("k1", {"info": 180}, when + dt.timedelta(days=1))
    assert marks == {"C-FAST": QuietMark("info", when.date()), "C-OLD": QuietMark("info", when.date())}


def test_the_pool_gets_its_connection_back_as_it_was(db):
    """After the lookup, the insert and a refused insert, the one pooled
    connection still runs transactions (not left in autocommit) and holds
    no transaction open."""
    from cds_service.store import issued_cards

    _, store = db
    card = _card()
    store.quiet_marks("k", {"info": 180})
    store.record_cards([card])
    with pytest.raises(sa.exc.IntegrityError):
        store.record_cards([card])
    assert (store.engine.pool.checkedin(), store.engine.pool.checkedout()) == (1, 0)
    other = _card()
    with store.engine.connect() as conn:
        conn.execute(issued_cards.insert(), [{**dataclasses.asdict(other), "issued_at": dt.datetime.now(dt.timezone.utc),
                                              "suggestion_uuids": "[]"}])
        conn.rollback()
    assert store.card(other.card_uuid) is None
    assert store.card(card.card_uuid)["card_id"] == "C-TX-BP"


def test_a_statement_interrupted_midway_does_not_return_its_connection_to_the_pool(db, monkeypatch):
    """A BaseException mid-statement (a gevent Timeout, the worker stopping)
    leaves the connection in an unknown state: it is dropped, and the next
    call connects anew."""
    from cds_service import store as store_module

    class Interrupted(BaseException):
        pass

    def interrupted(self, rows):
        raise Interrupted

    _, store = db
    store.quiet_marks("k", {"info": 180})
    pooled = store.engine.raw_connection()
    before = pooled.dbapi_connection
    pooled.close()
    with monkeypatch.context() as patch:
        patch.setattr(store_module._Compiled, "rows", interrupted)
        with pytest.raises(Interrupted):
            store.quiet_marks("k", {"info": 180})
    assert store.quiet_marks("k", {"info": 180}) == {}
    pooled = store.engine.raw_connection()
    assert pooled.dbapi_connection is not before
    pooled.close()


@pytest.mark.skipif(not PG_URL, reason="CDS_TEST_POSTGRES_URL is not set")
def test_on_postgresql_the_lookup_and_the_insert_are_one_round_trip_each(tmp_path):
    """What libpq sends: one Sync per call (one round trip), no BEGIN, COMMIT
    or ROLLBACK, and the server idle (no transaction) after each."""
    from cds_service.store import make_engine

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL, future=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    store = Store(make_engine(url.render_as_string(hide_password=False)))
    try:
        store.create_schema()
        store.quiet_marks("k", {"info": 180})  # connects; the dialect's first-connect queries
        pooled = store.engine.raw_connection()
        pgconn = pooled.dbapi_connection.pgconn
        pooled.close()
        trace = tmp_path / "libpq.trace"
        with open(trace, "wb") as out:
            pgconn.trace(out.fileno())
            try:
                store.quiet_marks("k", {"info": 180, "warning": 30})
                store.record_cards([_card(), _card(), _card()])
            finally:
                pgconn.untrace()
        sent = [line.split("\t")[3] for line in trace.read_text().splitlines() if "\tF\t" in line]
        received = [line.split("\t", 4)[3:] for line in trace.read_text().splitlines() if "\tB\t" in line]
        assert sent == ["Parse", "Bind", "Describe", "Execute", "Sync"] * 2
        assert [r for r in received if r[0] == "ReadyForQuery"] == [["ReadyForQuery", " I"]] * 2
        assert store.engine.pool.checkedout() == 0
    finally:
        store.engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_a_lease_checks_out_once_for_the_lookup_and_the_insert(db):
    """Store.lease: the quieting lookup and the insert share one pooled
    connection, checked out by the first and back in the pool, as it was,
    when the lease closes; the insert is committed before record_cards returns."""
    from sqlalchemy import event

    _, store = db
    store.quiet_marks("k", {"info": 180})  # connects
    checkouts = []
    event.listen(store.engine.pool, "checkout", lambda *args: checkouts.append(1))
    card = _card()
    with store.lease() as lease:
        assert store.quiet_marks("k", {"info": 180}, lease=lease) == {}
        assert store.engine.pool.checkedout() == 1
        store.record_cards([card], lease=lease)
        assert store.engine.pool.checkedout() == 1
    assert len(checkouts) == 1
    assert store.engine.pool.checkedout() == 0
    assert store.card(card.card_uuid)["card_id"] == "C-TX-BP"
    # A lease that never ran a statement holds nothing.
    with store.lease():
        assert store.engine.pool.checkedout() == 0


def test_a_lease_gives_back_a_connection_whose_statement_failed(db):
    """A refused insert on a lease returns its connection (rolled back): the
    lease's next statement checks out again, and the pool's connection runs
    transactions as before."""
    _, store = db
    card = _card()
    store.record_cards([card])
    with store.lease() as lease:
        store.quiet_marks("k", {"info": 180}, lease=lease)
        with pytest.raises(sa.exc.IntegrityError):
            store.record_cards([card], lease=lease)
        assert lease.pooled is None and store.engine.pool.checkedout() == 0
        other = _card()
        store.record_cards([other], lease=lease)
        assert store.engine.pool.checkedout() == 1
    assert store.engine.pool.checkedout() == 0
    assert store.card(other.card_uuid)["card_id"] == "C-TX-BP"


def test_a_lease_whose_connection_died_retries_on_a_new_one(db, monkeypatch):
    """A statement on a lease that fails as on a dropped connection gives the
    connection back and leaves the lease empty: Store._retrying's second try
    checks one out again, as without a lease."""
    from cds_service import store as store_module

    _, store = db
    calls = []
    real = store_module._Compiled.rows

    def dies_once(self, rows):
        if not calls:
            calls.append(1)
            raise sa.exc.DBAPIError("SELECT", {}, Exception("gone"), connection_invalidated=True)
        return real(self, rows)

    with store.lease() as lease:
        store.quiet_marks("k", {"info": 180}, lease=lease)
        monkeypatch.setattr(store_module._Compiled, "rows", dies_once)
        assert store.quiet_marks("k", {"info": 180}, lease=lease) == {}
        assert calls == [1]
        assert lease.pooled is not None and store.engine.pool.checkedout() == 1
    assert store.engine.pool.checkedout() == 0


def test_feedback_counts_only_from_the_client_the_card_was_issued_to(db):
    from cds_service.store import client_ref

    _, store = db
    a, b = client_ref("https://a.example", "t1"), client_ref("https://b.example", "t1")
    assert a != b != client_ref("https://a.example", "t2") and client_ref(None, None) == "anonymous"
    card = dataclasses.replace(_card(), patient_key="k1", client=a)
    store.record_cards([card])
    entry = FeedbackEntry(card.card_uuid, "overridden", "2026-01-01T00:00:00Z")
    foreign = store.store_feedback("osteoporosis-patient-view", [entry], client=b)
    assert (foreign.stored, foreign.duplicates, foreign.unknown_cards, foreign.foreign) == (0, 0, 1, 1)
    assert store.feedback_rows() == [] and store.quiet_marks("k1", {"info": 180}) == {}
    own = store.store_feedback("osteoporosis-patient-view", [entry], client=a)
    assert (own.stored, own.duplicates, own.unknown_cards) == (1, 0, 0)
    assert set(store.quiet_marks("k1", {"info": 180})) == {"C-TX-BP"}


def test_feedback_timestamps_are_compared_in_utc_and_suggestions_checked(db):
    from cds_service.store import UnknownSuggestion

    _, store = db
    card = _card()
    store.record_cards([card])
    first = store.store_feedback("svc", [FeedbackEntry(card.card_uuid, "overridden", "2026-01-01T01:00:00+01:00")])
    again = store.store_feedback("svc", [FeedbackEntry(card.card_uuid, "overridden", "2026-01-01t00:00:00z")])
    assert (first.stored, again.duplicates) == (1, 1)
    assert [r["outcome_timestamp"] for r in store.feedback_rows()] == ["2026-01-01T00:00:00Z"]
    with pytest.raises(UnknownSuggestion, match="'bogus-id'"):
        store.store_feedback("osteoporosis-patient-view", [
            FeedbackEntry(str(uuid.uuid4()), "overridden", "2026-01-02T00:00:00Z"),
            FeedbackEntry(card.card_uuid, "accepted", "2026-01-02T00:00:00Z", ("s1", "bogus-id"))])
    assert len(store.feedback_rows()) == 1  # the whole request refused
    ok = store.store_feedback("osteoporosis-patient-view",
                              [FeedbackEntry(card.card_uuid, "accepted", "2026-01-02T00:00:00Z", ("s1",))])
    assert ok.stored == 1


def _engine_at(db, name: str, revision: str) -> sa.Engine:
    """An engine on an empty database (a new SQLite file `name`, or the test's PostgreSQL
    schema emptied) migrated to `revision`, as an older release left it."""
    from cds_service import migrations

    (kind, target), _ = db
    if kind == "sqlite":
        engine = sa.create_engine(target.replace("store.db", name), future=True)
    else:
        engine = _pg_store(target).engine
        with engine.begin() as conn:
            for table in ["issued_cards", "feedback", "quieted_cards", "used_jtis", "alembic_version"]:
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    assert migrations.upgrade(engine, revision) == revision
    return engine


def _upgraded_with_a_card(db, name: str, revision: str, **columns: str) -> tuple[sa.Engine, str]:
    """_engine_at(db, name, revision) holding one C-TX-BP card for patient key "k1" as that
    release wrote it (`columns`: the other columns it knew), then upgraded to the head."""
    from cds_service import migrations

    engine = _engine_at(db, name, revision)
    legacy = str(uuid.uuid4())
    row = {"card_uuid": legacy, "service_id": "osteoporosis-patient-view", "card_id": "C-TX-BP", "indicator": "info",
           "hook_instance": "h", "issued_at": dt.datetime.now(dt.timezone.utc), "suggestion_uuids": "[]",
           "patient_key": "k1", **columns}
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO issued_cards ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"),
                     row)
    assert migrations.upgrade(engine) == migrations.head_revision()
    return engine, legacy


def test_cards_issued_before_the_client_was_recorded_keep_their_feedback_but_quiet_nothing(db):
    """Upgrade from schema 0002: an issued card has no client. Its feedback, from
    whoever sends it, is stored and counted for the report as before, but
    quiets nothing (the service cannot tell whose it is)."""
    from cds_service.store import client_ref

    engine, legacy = _upgraded_with_a_card(db, "old.db", "0002", suggestion_uuids='["s1"]')
    store = Store(engine)
    assert store.card(legacy)["client"] is None
    result = store.store_feedback("osteoporosis-patient-view",
                                  [FeedbackEntry(legacy, "accepted", "2026-01-01T00:00:00Z", ("s1",))],
                                  client=client_ref("https://b.example", None))
    assert (result.stored, result.unknown_cards) == (1, 0)
    assert store.feedback_rows()[0]["card_id"] == "C-TX-BP"
    assert store.quiet_marks("k1", {"info": 180}) == {}
    engine.dispose()


def test_feedback_first_sent_to_another_service_is_the_cards_own_when_resent_where_it_belongs(db):
    """Operator review 16: the same entry (card, outcome, time) posted to the wrong
    service's endpoint, then to the service that issued the card, was dropped the
    second time as a duplicate: the report counted nothing for the card and it quieted
    nothing. The stored row now becomes the card's own, once."""
    _, store = db
    card = dataclasses.replace(_card(), patient_key="k1", client="anonymous")
    store.record_cards([card])
    entry = FeedbackEntry(card.card_uuid, "overridden", "2026-01-01T00:00:00Z")
    wrong = store.store_feedback("osteoporosis-order-sign", [entry])
    assert (wrong.stored, wrong.duplicates, wrong.unknown_cards) == (1, 0, 1)
    assert store.quiet_marks("k1", {"info": 180}) == {}
    right = store.store_feedback("osteoporosis-patient-view", [entry])
    assert (right.stored, right.duplicates, right.unknown_cards) == (1, 0, 0)
    [row] = store.feedback_rows()
    assert (row["service_id"], row["card_id"], row["known_card"]) == ("osteoporosis-patient-view", "C-TX-BP", True)
    assert set(store.quiet_marks("k1", {"info": 180})) == {"C-TX-BP"}
    # Resent again, anywhere: a duplicate, and the row stays the card's own.
    assert store.store_feedback("osteoporosis-patient-view", [entry]).duplicates == 1
    assert store.store_feedback("osteoporosis-order-sign", [entry]).duplicates == 1
    [row] = store.feedback_rows()
    assert (row["service_id"], row["known_card"]) == ("osteoporosis-patient-view", True)


def test_trigger_keys_go_with_the_feedback_and_old_rows_keep_none(db):
    """Upgrade from schema 0003 (migration 0004 adds trigger_keys): a card issued before it
    quiets with no keys (the date alone, QuietMark.keys None); a card issued after it
    carries its keys to the quieting row, and the marks of one card id hold every key the
    cards acted on rested on."""
    from cds_service import migrations

    engine, legacy = _upgraded_with_a_card(db, "old3.db", "0003", client="anonymous")
    assert migrations.current_revision(engine) == "0004"
    store = Store(engine)
    assert store.card(legacy)["trigger_keys"] is None
    store.store_feedback("osteoporosis-patient-view", [FeedbackEntry(legacy, "overridden", "2026-01-01T00:00:00Z")])
    assert store.quiet_marks("k1", {"info": 180})["C-TX-BP"].keys is None

    def issue(card_id, keys):
        card = dataclasses.replace(_card(card_id), patient_key="k2", client="anonymous", trigger_keys=keys)
        store.record_cards([card])
        store.store_feedback("osteoporosis-patient-view",
                             [FeedbackEntry(card.card_uuid, "overridden", "2026-01-01T00:00:00Z")])

    issue("C-TX-BP", ("a", "b"))
    issue("C-TX-BP", ("c",))
    issue("C-EXERCISE", ())
    marks = store.quiet_marks("k2", {"info": 180})
    assert marks["C-TX-BP"].keys == {"a", "b", "c"}
    assert marks["C-EXERCISE"].keys == frozenset()  # kept, and empty: any token is new
    engine.dispose()
