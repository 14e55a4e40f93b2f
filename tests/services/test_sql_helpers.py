"""app.infra.sql's statement helpers, on PostgreSQL and on SQLite (development)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.infra.sql import built_once, one_of_param


@pytest.fixture
def sqlite_session() -> Iterator[Session]:
    with Session(sa.create_engine("sqlite://")) as session:
        yield session


def test_built_once_builds_a_statement_once_per_dialect_and_arguments(db_session, sqlite_session):
    built: list[tuple[str, int]] = []

    @built_once
    def statement(session, width: int) -> sa.Select[tuple[int]]:
        built.append((session.get_bind().dialect.name, width))
        return sa.select(sa.literal(width))

    assert statement(db_session, 1) is statement(db_session, 1)
    assert statement(db_session, 2) is not statement(db_session, 1)
    assert statement(sqlite_session, 1) is not statement(db_session, 1)
    assert built == [("postgresql", 1), ("postgresql", 2), ("sqlite", 1)]
    assert db_session.scalar(statement(db_session, 2)) == 2


@pytest.mark.parametrize(("ids", "found"), [([1, 2, 3], True), ([4], False), ([], False)])
def test_one_of_param_binds_its_values_at_execution(db_session, sqlite_session, ids, found):
    for session in (db_session, sqlite_session):
        query = sa.select(sa.literal(1)).where(
            one_of_param(session, sa.literal(3, type_=sa.BigInteger), name="ids")
        )
        assert (session.scalar(query, {"ids": ids}) is not None) is found
