"""Persistence: the audit and feedback tables, their migrations and batch-oriented, idempotent access.

`engine` (connections and the error hierarchy), `orm` (tables), `repository` (reads and writes of wire
records), `cases` (the review-case queue), `migrate` (Alembic, configured in code). Only the light parts
are imported here: pandas and Alembic load when `repository`, `cases` or `migrate` is imported.
"""

from pipeline.db.engine import (
    DatabaseError,
    MigrationError,
    RiskstreamDbError,
    TransientDatabaseError,
    create_engine_from_settings,
    is_transient,
    make_engine,
    redact_url,
    session_factory,
)

__all__ = [
    "DatabaseError",
    "MigrationError",
    "RiskstreamDbError",
    "TransientDatabaseError",
    "create_engine_from_settings",
    "is_transient",
    "make_engine",
    "redact_url",
    "session_factory",
]
