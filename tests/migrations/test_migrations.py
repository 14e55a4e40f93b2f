"""One Alembic history: `upgrade head` on an empty database, and no drift from the models."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy.engine import make_url

from app.extensions import db
from app.models import Base

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = str(ROOT / "migrations")


def _drift(app) -> list:
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


@pytest.fixture
def empty_postgres(database_url):
    server = make_url(database_url)
    name = f"rallypoint_mig_{uuid.uuid4().hex[:10]}"
    admin = server.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield server.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_head_on_empty_postgres_has_no_drift(empty_postgres, other_app):
    app = other_app(DATABASE_URL=empty_postgres)
    with app.app_context():
        upgrade(directory=MIGRATIONS)
    assert _drift(app) == []
    with app.app_context():
        downgrade(directory=MIGRATIONS, revision="base")
        upgrade(directory=MIGRATIONS)
        db.engine.dispose()


def test_upgrade_head_on_empty_sqlite_has_no_drift(tmp_path, other_app):
    app = other_app(DATABASE_URL=f"sqlite:///{tmp_path / 'rp.db'}")
    with app.app_context():
        upgrade(directory=MIGRATIONS)
    assert _drift(app) == []
