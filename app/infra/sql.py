"""Small SQL helpers shared by the bulk paths (sender, tracking flusher, breakdown)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import scoped_session

if TYPE_CHECKING:  # the session type only: infra sits below the services
    from app.services import DbSession


def is_postgresql(session: DbSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


S = TypeVar("S", bound=sa.Executable)
P = ParamSpec("P")


def built_once(
    build: Callable[Concatenate[DbSession, P], S],
) -> Callable[Concatenate[DbSession, P], S]:
    """A statement built once per dialect and arguments, its values bound at execution.

    For the statements a send runs per batch: building a SQLAlchemy statement and its cache
    key walks every clause on every call (about 1 ms of a worker's CPU for the batch's
    closing UPDATE with its four EXISTS, against 0.3 ms to execute it once built); a
    statement object keeps its cache key, so a built one goes straight to the compiled
    cache. `build` gets the session only to see the dialect (`insert`, `one_of_param`);
    its other arguments (hashable: flags, names) pick a variant. Values come in as
    `sa.bindparam`s named unlike any column the statement sets (SQLAlchemy reserves those).
    """
    built: dict[tuple[Any, ...], S] = {}

    @functools.wraps(build)
    def statement(session: DbSession, *args: P.args, **kwargs: P.kwargs) -> S:
        key = (session.get_bind().dialect.name, args, tuple(sorted(kwargs.items())))
        found = built.get(key)
        if found is None:
            found = built[key] = build(session, *args, **kwargs)
        return found

    return statement


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


def commit_keeping_loaded(session: DbSession) -> None:
    """Commit without expiring the objects the session loaded (`expire_on_commit`, once).

    After a commit SQLAlchemy reads every loaded object again on its next use. A send's
    claim commits between reading the campaign (with its variants) and the organization's
    settings and rendering from them: kept, they cost no more statements (three a batch).
    Only for objects whose committed state cannot have changed in a way that matters.
    """
    target = session.registry() if isinstance(session, scoped_session) else session
    expire = target.expire_on_commit
    target.expire_on_commit = False
    try:
        target.commit()
    finally:
        target.expire_on_commit = expire


def one_of_param(
    session: DbSession,
    column: Any,
    *,
    name: str = "ids",
    type_: type[sa.types.TypeEngine[Any]] | sa.types.TypeEngine[Any] = sa.BigInteger,
) -> Any:
    """`one_of` with the values bound at execution as parameter `name` (a `built_once`
    statement): ``= ANY(:name)`` on PostgreSQL, an expanding IN on SQLite."""
    if is_postgresql(session):
        return column == sa.any_(sa.bindparam(name, type_=ARRAY(type_)))
    return column.in_(sa.bindparam(name, expanding=True))


def plan_as_short_query(session: DbSession, *, random_page_cost: float | None = None) -> None:
    """Plan this transaction's statements as the short, index-driven queries they are.

    A send batch's claim reads 1,000 rows by index; with estimates inflated by a sub-plan
    the planner priced it above jit_above_cost and parallel_setup_cost, so PostgreSQL
    compiled it with LLVM (20-60 ms each time) or started a parallel worker (~50 ms) for a
    query that runs in 2-5 ms. Measured with auto_explain under `make bench-send`: those
    two were most of the claim's time. `SET LOCAL` (set_config(..., true)) ends with the
    transaction, so it holds under PgBouncer's transaction pooling too; one round trip.
    `random_page_cost`, when given, prices index probes for tables hot in memory.
    """
    if not is_postgresql(session):
        return
    settings = {"jit": "off", "max_parallel_workers_per_gather": "0"}
    if random_page_cost is not None:
        settings["random_page_cost"] = str(random_page_cost)
    calls = ", ".join(f"set_config('{name}', :{name}, true)" for name in settings)
    session.execute(sa.text(f"SELECT {calls}"), settings)


# A write of at least this many rows, and a tenth of the table (autovacuum's own rule for
# analyzing), refreshes the table's planner statistics at once.
ANALYZE_MIN_ROWS = 1000


def refresh_statistics(
    session: DbSession, table: str, changed: int, columns: Sequence[str] = ()
) -> bool:
    """ANALYZE `table` (PostgreSQL) after a bulk write that changed much of it.

    Autovacuum analyzes a table a while after a big write; a query planned before that
    runs on no statistics, and picks plans that are 5-10 times slower (a first send right
    after an import, or a campaign's first batches right after its freeze). ANALYZE inside
    the writing transaction samples its own new rows, and its statistics commit with them.
    `columns` limits it to the columns the next plans depend on (a third of the time for
    the ledger's four of twenty); the others keep their statistics until autovacuum's.
    Returns whether it ran.
    """
    if changed < ANALYZE_MIN_ROWS or not is_postgresql(session):
        return False
    known = session.scalar(
        sa.text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"), {"t": table}
    )
    if known is not None and known > 0 and changed < 0.1 * float(known):
        return False
    # Names from the code, never from input.
    listed = f" ({', '.join(columns)})" if columns else ""
    session.execute(sa.text(f"ANALYZE {table}{listed}"))
    return True


_SKIP_FK_CHECKS = "SET LOCAL session_replication_role = replica"
_KEEP_FK_CHECKS = "SET LOCAL session_replication_role = origin"


def may_skip_fk_checks(session: DbSession) -> bool:
    """Whether this role may turn off foreign-key triggers for a statement (PostgreSQL).

    A foreign-key check is an SPI query and a row lock per inserted row: 6-8 µs each, so a
    row with two references pays about as much for them as for its own insert. Only roles
    allowed to SET session_replication_role may skip them (superusers, GRANT SET ON
    PARAMETER on PostgreSQL 15+, managed services' admin roles with their own rules), so it
    is simply tried, in a savepoint; refused, the caller keeps the checks.
    """
    if not is_postgresql(session):
        return False
    try:
        with session.begin_nested():
            session.execute(sa.text(_SKIP_FK_CHECKS))
            session.execute(sa.text(_KEEP_FK_CHECKS))
    except sa.exc.DBAPIError:
        return False
    return True


@contextmanager
def fk_checks_skipped(session: DbSession, skip: bool) -> Iterator[None]:
    """Run the block's statements without foreign-key triggers when `skip` (may_skip_fk_checks).

    Only for a statement whose references are valid by construction: rows pointing at rows
    it created itself, or at rows this transaction holds locked. `SET LOCAL`: a failed
    statement rolls the transaction back, which restores the checks with it, so there is no
    reset on the way out of an error (it would only hide the error).
    """
    if not skip:
        yield
        return
    session.execute(sa.text(_SKIP_FK_CHECKS))
    yield
    session.execute(sa.text(_KEEP_FK_CHECKS))
