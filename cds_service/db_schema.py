"""Which database schema revision the database holds, compared with the
newest this release knows: what /readyz, the hook and feedback calls'
errors, `cds-service migrate`, `serve`, `report` and `purge` say about it.

Read without Alembic (a worker that `cds-service serve` started never loads
it, about 10 MB less): the revision is the `alembic_version` row, and the
revisions this release knows are its migration files, each named after its
revision (`0003_card_client.py` is revision "0003"; tests/test_schema_state.py
checks the names against Alembic's own chain).

States: `current` (the newest this release knows), `missing` (no schema:
`cds-service migrate` never ran), `outdated` (an older revision: migrate has
not run since this release came), `newer` (a revision this release does not
know: a newer release migrated the database, e.g. before a rollback).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

_VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
_NAME = re.compile(r"^(\d{4})_\w+\.py$")

KNOWN_REVISIONS: tuple[str, ...] = tuple(sorted(
    m.group(1) for m in (_NAME.match(p.name) for p in _VERSIONS.iterdir()) if m))
HEAD = KNOWN_REVISIONS[-1]

# PostgreSQL: undefined_table, undefined_column.
_SCHEMA_SQLSTATES = ("42P01", "42703")
_SQLITE_SCHEMA_MESSAGES = ("no such table", "no such column")


class SchemaNewer(Exception):
    """The database was migrated by a newer release than this one: what
    `cds-service migrate` (and `serve`, which migrates first) refuse."""

    def __init__(self, revision: str):
        self.state = SchemaState(revision)
        super().__init__(self.state.describe() + ": a newer release migrated it; run that release, or restore "
                         "the database from before that upgrade (README: Rolling back)")


@dataclasses.dataclass(frozen=True)
class SchemaState:
    revision: str | None  # alembic_version's; None: no schema
    head: str = HEAD

    @property
    def status(self) -> str:
        if self.revision is None:
            return "missing"
        if self.revision == self.head:
            return "current"
        return "outdated" if self.revision in KNOWN_REVISIONS else "newer"

    def describe(self) -> str:
        """One line for an operator."""
        status = self.status
        if status == "missing":
            return "the database has no schema yet: run `cds-service migrate`"
        if status == "outdated":
            return (f"the database schema is at revision {self.revision}, older than this release's "
                    f"{self.head}: run `cds-service migrate`")
        if status == "newer":
            return (f"the database schema (revision {self.revision}) is newer than this release knows "
                    f"(its newest is {self.head})")
        return f"the database schema is at revision {self.revision}"

    def log_fields(self) -> dict[str, str | None]:
        return {"schema_status": self.status, "schema_revision": self.revision, "schema_head": self.head}


def is_schema_error(exc: BaseException) -> bool:
    """Whether a database error says a table or column is missing (a schema
    that is not this release's), not that the database is unreachable."""
    orig = getattr(exc, "orig", None) or exc
    if getattr(orig, "sqlstate", None) in _SCHEMA_SQLSTATES:
        return True
    if type(orig).__module__ == "sqlite3":
        message = str(orig)
        return message.startswith(_SQLITE_SCHEMA_MESSAGES) or " has no column named " in message
    return False


def read_state(conn: sa.Connection) -> SchemaState:
    """The schema state on this connection; driver errors other than a
    missing alembic_version table propagate (the database is unreachable).
    On PostgreSQL a missing table aborts the connection's transaction: the
    caller's connection is then only good for a rollback."""
    try:
        rows: list[Any] = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    except sa.exc.DBAPIError as exc:
        if is_schema_error(exc):
            return SchemaState(None)
        raise
    return SchemaState(max((r[0] for r in rows), default=None))


def engine_state(engine: sa.Engine) -> SchemaState:
    with engine.connect() as conn:
        return read_state(conn)
