"""Alembic environment: the schema is cds_service.store.metadata; the URL and
connection come from the caller (cds_service.migrations.upgrade)."""

from __future__ import annotations

from alembic import context

from cds_service.store import metadata

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through cds_service.migrations.upgrade()")
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_migrations_online()
