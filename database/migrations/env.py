"""Alembic environment: always driven programmatically by ``database.migrate`` on a live connection."""
from __future__ import annotations

from alembic import context

from database.migrate import mapped_name
from database.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("migrations run through database.migrate, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=mapped_name,
)
with context.begin_transaction():
    context.run_migrations()
