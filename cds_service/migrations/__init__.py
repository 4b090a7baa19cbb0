"""Database schema migrations (Alembic), run by `cds-service migrate` and,
unless CDS_AUTO_MIGRATE=false, when the application starts.

On PostgreSQL the upgrade holds an advisory lock, so replicas or init
containers starting together migrate one at a time instead of racing. A
SQLite file is only ever shared by processes on one machine (gunicorn's
workers), which take an exclusive lock on a file beside it instead.

A database at a revision this release does not know (a newer release
migrated it; `helm rollback` then starts this one) is not touched: the
upgrade raises SchemaNewer, which the commands tell in one line, instead of
Alembic's "Can't locate revision" traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import time
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from cds_service.db_schema import KNOWN_REVISIONS, SchemaNewer

_HERE = Path(__file__).resolve().parent
_LOCK_ID = 0x0C_D5_05_7E  # arbitrary, fixed: "cds osteo"
_SQLITE_ATTEMPTS = 10


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


@contextlib.contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def upgrade(engine: Engine, target: str = "head") -> str:
    """Bring the database to the newest schema (or to `target`, for tests of
    an upgrade); returns the revision."""
    with _sqlite_file_lock(engine):
        return _upgrade(engine, target)


def _upgrade(engine: Engine, target: str = "head") -> str:
    cfg = _config()
    for attempt in range(_SQLITE_ATTEMPTS):
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
                # Under the lock: a newer release migrating meanwhile is seen too.
                current = MigrationContext.configure(conn).get_current_revision()
                if current is not None and current not in KNOWN_REVISIONS:
                    raise SchemaNewer(current)
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
            return head_revision() if target == "head" else target
        except DBAPIError:
            # SQLite has no advisory lock: gunicorn workers starting together
            # on a new file can race, and the loser sees "table already
            # exists". The winner may still be creating tables when a loser
            # retries at once: wait a little (with jitter, so
            # losers do not collide again) and retry until the schema is
            # current. PostgreSQL is serialised by the lock above.
            if engine.dialect.name != "sqlite" or attempt == _SQLITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1) + random.uniform(0, 0.05))
    raise AssertionError("unreachable")
