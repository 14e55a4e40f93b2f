"""Configuration: read from the environment at instantiation, failing fast when unusable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import example, given
from hypothesis import strategies as st

from app import create_app
from app.models import Member
from config.settings import (
    ConfigError,
    DevelopmentConfig,
    ProductionConfig,
    TestingConfig,
    config_from_env,
    read_json,
)
from tests import factories

ROOT = Path(__file__).resolve().parent.parent
PROD_ENV = {
    "RALLYPOINT_ENV": "production",
    "DATABASE_URL": "postgresql://u@db/rallypoint",
    "SECRET_KEY": "s" * 48,
}


def test_production_without_secret_key_fails_with_a_clear_message():
    env = {k: v for k, v in PROD_ENV.items() if k != "SECRET_KEY"}
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app(ProductionConfig(environ=env))


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter, as a process started by the Procfile would."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_production_process_exits_at_once_without_secret_key():
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update({k: v for k, v in PROD_ENV.items() if k != "SECRET_KEY"})
    result = _python("from app import create_app; create_app()", env)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


@pytest.mark.parametrize("secret", ["short", "dev-only-insecure-secret-key-change-me"])
def test_production_refuses_weak_secret(secret):
    with pytest.raises(ConfigError, match="too weak"):
        ProductionConfig(environ={**PROD_ENV, "SECRET_KEY": secret}).validate()


def test_production_needs_a_database_url():
    env = {k: v for k, v in PROD_ENV.items() if k != "DATABASE_URL"}
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        ProductionConfig(environ=env).validate()


def test_development_defaults_to_sqlite_and_outbox():
    config = DevelopmentConfig(environ={})
    assert config.SQLALCHEMY_DATABASE_URI.startswith("sqlite:///")
    assert config.MAIL_TRANSPORT == "outbox"
    config.validate()


def test_postgres_urls_use_psycopg3():
    config = TestingConfig(environ={"DATABASE_URL": "postgres://u:p@h:5432/d"})
    assert config.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://u:p@h:5432/d"


def test_sendgrid_transport_needs_an_api_key():
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        DevelopmentConfig(environ={"MAIL_TRANSPORT": "sendgrid"}).validate()


def test_unknown_environment_name_is_refused():
    with pytest.raises(ConfigError, match="RALLYPOINT_ENV"):
        config_from_env({"RALLYPOINT_ENV": "staging"})


def test_environment_is_read_when_instantiated_not_at_import():
    a = TestingConfig(environ={"PUBLIC_BASE_URL": "https://a.example.org/"})
    b = TestingConfig(environ={"PUBLIC_BASE_URL": "https://b.example.org"})
    assert (a.PUBLIC_BASE_URL, b.PUBLIC_BASE_URL) == (
        "https://a.example.org",
        "https://b.example.org",
    )
    assert a.SESSION_COOKIE_SECURE is True


def test_session_cookie_settings_are_secure(app):
    assert app.config["SESSION_COOKIE_HTTPONLY"] is True
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    prod = ProductionConfig(environ={**PROD_ENV, "PUBLIC_BASE_URL": "https://alerts.example.org"})
    assert prod.SESSION_COOKIE_SECURE is True
    assert prod.REMEMBER_COOKIE_SECURE is True


def test_retention_periods_default_to_90_and_30_days():
    config = DevelopmentConfig(environ={})
    assert (config.TRACKING_DETAIL_DAYS, config.WEBHOOK_BATCH_DAYS) == (90, 30)
    custom = DevelopmentConfig(environ={"TRACKING_DETAIL_DAYS": "30", "WEBHOOK_BATCH_DAYS": "7"})
    assert (custom.TRACKING_DETAIL_DAYS, custom.WEBHOOK_BATCH_DAYS) == (30, 7)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRACKING_DETAIL_DAYS", "ninety", "TRACKING_DETAIL_DAYS must be a whole number"),
        ("TRACKING_DETAIL_DAYS", "1.5", "TRACKING_DETAIL_DAYS must be a whole number"),
        ("TRACKING_DETAIL_DAYS", "0", "TRACKING_DETAIL_DAYS must be a number of days from 1"),
        ("WEBHOOK_BATCH_DAYS", "-30", "WEBHOOK_BATCH_DAYS must be a number of days from 1"),
        ("WEBHOOK_BATCH_DAYS", "100000", "WEBHOOK_BATCH_DAYS must be a number of days from 1"),
    ],
)
def test_bad_retention_periods_are_refused_at_start_up(name, value, message):
    with pytest.raises(ConfigError, match=message):
        create_app(DevelopmentConfig(environ={name: value}))


def test_webhook_batches_must_outlive_the_replay_window():
    env = {"WEBHOOK_BATCH_DAYS": "1", "SENDGRID_WEBHOOK_MAX_AGE": "86400"}
    with pytest.raises(ConfigError, match="longer than SENDGRID_WEBHOOK_MAX_AGE"):
        DevelopmentConfig(environ=env).validate()


def test_worker_and_beat_refuse_to_start_with_a_bad_retention_period():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALLYPOINT_")}
    env["TRACKING_DETAIL_DAYS"] = "0"
    result = _python("import workers.celery_app", env)
    assert result.returncode != 0
    assert "TRACKING_DETAIL_DAYS must be a number of days from 1 to 3650; got 0" in result.stderr


def test_the_worker_parent_freezes_what_it_built_before_it_forks():
    """Pool processes never walk the app, the tasks and the compiled layouts in a full
    collection, whatever the settings (create_app itself freezes only outside TESTING)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RALLYPOINT_")}
    env["RALLYPOINT_ENV"] = "testing"
    result = _python("import gc, workers.celery_app; print(gc.get_freeze_count())", env)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) > 50_000


# -- jsonb values read by orjson where it reads them as json.loads does (config.read_json) --

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(_json_values)
@example({"shift": "nights"})
@example(2**64)  # orjson alone reads this as a float
@example(-(2**63) - 1)
@example({"ids": [18446744073709551615, -9223372036854775808]})
def test_read_json_reads_what_json_loads_reads(value):
    text = json.dumps(value)
    read = read_json(text.encode())
    assert read == json.loads(text)
    assert repr(read) == repr(json.loads(text))  # 2**64 stays an int, 1.0 stays a float
    assert read_json(text) == read


def test_read_json_takes_what_orjson_refuses():
    assert read_json(b"1e400") == json.loads("1e400")
    assert read_json(b'"\\ud800"') == json.loads('"\\ud800"')


def test_jsonb_comes_back_from_postgresql_as_written(db_session):
    attributes = {"badge": 2**70, "dues": 12.5, "shift": "nights", "tags": ["steward", None]}
    added = factories.member(db_session, attributes=attributes)
    db_session.commit()
    db_session.expire_all()
    read = db_session.scalar(sa.select(Member.attributes).where(Member.id == added.id))
    assert read == attributes
    assert isinstance(read["badge"], int)
