"""What a block of code sends to PostgreSQL, and how PostgreSQL plans it (for plan tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa


@contextmanager
def captured(session, match: Callable[[str], bool]) -> Iterator[list[tuple[str, Any, str]]]:
    """The statements the block sends that `match`: each with its parameters and the
    session_replication_role in force as it ran ('replica': foreign-key triggers off)."""
    seen: list[tuple[str, Any, str]] = []
    connection = session.connection()

    def capture(conn, cursor, statement, parameters, context, executemany):
        if match(statement):
            role = cursor.connection.execute("SHOW session_replication_role").fetchone()[0]
            seen.append((statement, parameters, role))

    sa.event.listen(connection, "before_cursor_execute", capture)
    try:
        yield seen
    finally:
        sa.event.remove(connection, "before_cursor_execute", capture)


def explain(session, statement: str, parameters: Any) -> list[str]:
    """PostgreSQL's plan of a captured statement, line by line."""
    cursor = session.connection().connection.driver_connection.cursor()
    cursor.execute("EXPLAIN " + statement, parameters)
    return [row[0] for row in cursor.fetchall()]
