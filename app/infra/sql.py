"""Small SQL helpers shared by the bulk paths (sender, tracking flusher, breakdown)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from app.services import DbSession


def is_postgresql(session: DbSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert(session: DbSession, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with the dialect's ON CONFLICT clauses (PostgreSQL, or SQLite in development)."""
    return (postgresql.insert if is_postgresql(session) else sqlite.insert)(table)


def one_of(
    session: DbSession,
    column: Any,
    values: Collection[Any],
    *,
    name: str = "ids",
    type_: type[sa.types.TypeEngine[Any]] | sa.types.TypeEngine[Any] = sa.BigInteger,
) -> Any:
    """`column` is one of `values`: ``= ANY(:name)`` with one array parameter on PostgreSQL.

    A thousand-value IN list costs SQLAlchemy and psycopg a fresh statement to render and
    parse every time; the array is one bound value and the same statement text. SQLite
    (development) gets a plain IN.
    """
    if is_postgresql(session):
        return column == sa.any_(sa.bindparam(name, list(values), type_=ARRAY(type_)))
    return column.in_(list(values))
