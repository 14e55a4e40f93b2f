"""Fixtures: a private PostgreSQL database and Redis per test session, the app, sessions."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url
from sqlalchemy.orm import scoped_session, sessionmaker

from app import create_app
from app.extensions import db, limiter
from app.models import Base, Role, User
from app.services.organization import users as user_service
from config.settings import TestingConfig, normalise_database_url
from tests.support.forms import login
from tests.support.limiter import session_limiter_kept
from tests.support.servers import RedisServer

PASSWORD = "correct horse battery"
SENDGRID_TEST_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw"
    "+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
ROOT = Path(__file__).resolve().parent.parent


def _server_url() -> str:
    raw = (
        os.environ.get("TEST_DATABASE_URL")
        or os.environ.get("DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    if not raw.startswith(("postgres://", "postgresql")):
        pytest.exit("The tests need PostgreSQL: set TEST_DATABASE_URL or DATABASE_URL", 2)
    return normalise_database_url(raw)


def _libpq(url: sa.URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A new, empty database on the test server, dropped at the end. Never touches another."""
    server = make_url(_server_url())
    name = f"rallypoint_test_{uuid.uuid4().hex[:12]}"
    admin = _libpq(server.set(database="postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def test_environ(database_url: str, redis_server: RedisServer, tmp_path_factory) -> dict[str, str]:
    """The environment a test app (and a worker subprocess) is configured from."""
    return {
        "RALLYPOINT_ENV": "testing",
        "SECRET_KEY": "test-secret-key-that-is-long-enough-000000",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "PUBLIC_BASE_URL": "http://localhost:5000",
        "MAIL_TRANSPORT": "outbox",
        "OUTBOX_DIR": str(tmp_path_factory.mktemp("outbox")),
        "LOG_LEVEL": "WARNING",
        # The official signed Event Webhook test vector's key (tests/fixtures/sendgrid).
        "SENDGRID_WEBHOOK_PUBLIC_KEY": SENDGRID_TEST_PUBLIC_KEY,
    }


@pytest.fixture(scope="session")
def app(test_environ: dict[str, str]) -> Iterator[Flask]:
    from flask_migrate import upgrade

    application = create_app(TestingConfig(environ=test_environ))
    with application.app_context():
        upgrade(directory=str(ROOT / "migrations"))
    yield application
    with application.app_context():
        db.engine.dispose()


@pytest.fixture
def app_ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


@pytest.fixture
def db_session(app: Flask) -> Iterator[scoped_session]:
    """A session inside a transaction rolled back after the test.

    `join_transaction_mode="create_savepoint"` turns the code's own commits into savepoint
    releases, so after-commit hooks still fire while nothing outlives the test.
    """
    with app.app_context():
        connection = db.engine.connect()
        outer = connection.begin()
        original = db.session
        session = scoped_session(
            sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
        )
        db.session = session
        try:
            yield session
        finally:
            session.remove()
            db.session = original
            outer.rollback()
            connection.close()


@pytest.fixture
def committed_db(app: Flask) -> Iterator[None]:
    """Real commits (for workers in other threads or processes); every table emptied after."""
    yield
    with app.app_context():
        db.session.remove()
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client; rate-limit counters start from zero for each test."""
    with app.app_context():
        limiter.reset()
    return app.test_client()


@pytest.fixture
def make_user(db_session):
    def _make(role: Role | str = Role.ORGANIZER, email: str | None = None) -> User:
        role_value = role.value if isinstance(role, Role) else role
        user = user_service.create_user(
            db_session,
            email=email or f"{role_value}-{uuid.uuid4().hex[:8]}@example.org",
            password=PASSWORD,
            role=role_value,
        )
        db_session.commit()
        return user

    return _make


@pytest.fixture
def login_as(client: FlaskClient, make_user):
    """Log the test client in as a new user of the given role."""

    def _login(role: Role | str = Role.ORGANIZER) -> User:
        user = make_user(role)
        response = login(client, user.email, PASSWORD)
        assert response.status_code == 302, response.get_data(as_text=True)
        return user

    return _login


@pytest.fixture
def other_app(test_environ):
    """Build extra apps (another database or Redis) without disturbing the session app.

    Flask-Limiter keeps its storage on the one global `limiter`; each create_app() rebinds it,
    so the session app's limiter state is restored afterwards.
    """
    built: list[Flask] = []

    def _build(**overrides: str) -> Flask:
        built.append(create_app(TestingConfig(environ={**test_environ, **overrides})))
        return built[-1]

    with session_limiter_kept():
        yield _build
        for extra in built:
            with extra.app_context():
                db.engine.dispose()
