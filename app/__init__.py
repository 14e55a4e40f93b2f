"""Rallypoint: campaign email and action alerts for unions and movements."""

from __future__ import annotations

import gc
from typing import Any

from celery import Celery, Task
from flask import Flask
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from app import models  # noqa: F401 - registers every table on the metadata
from app.extensions import csrf, db, limiter, login_manager, migrate
from app.infra import redis_client
from config.celeryconfig import celery_settings
from config.log import configure_logging
from config.settings import ROOT, BaseConfig, config_from_env

# The layers above the services (web UI, API, public endpoints, CLI) are imported when an
# app is built, in create_app: a worker, a script or a test that imports a service or a
# model loads none of them, and they may import from `app` without a cycle.


def create_app(config: BaseConfig | None = None) -> Flask:
    """Build the Flask application.

    Args:
        config: a settings object; read from the environment (RALLYPOINT_ENV) when omitted.

    Raises:
        config.settings.ConfigError: a required setting is missing (e.g. SECRET_KEY in production).
    """
    config = config or config_from_env()
    config.validate()
    configure_logging(config.LOG_LEVEL)

    app = Flask(
        __name__,
        template_folder="templates",
        static_folder="static",
        instance_path=str(ROOT / "var" / "instance"),
    )
    app.config.from_mapping(config.to_dict())
    app.config["SETTINGS"] = config

    if config.TRUSTED_PROXY_COUNT:
        # The client's address and scheme as the proxies saw them (request.remote_addr feeds
        # rate limits, Apple-proxy open detection and the consent record of a sign-up).
        proxies = config.TRUSTED_PROXY_COUNT
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)  # type: ignore[method-assign]
    _init_extensions(app)
    celery_init_app(app)
    _register_blueprints(app)

    from app.cli import register_cli  # noqa: PLC0415 - a layer above the services, see the top

    register_cli(app)
    if not config.TESTING:
        # What is built by now (modules, models, routes, the OpenAPI spec: ~160,000 objects)
        # lives as long as the process. Frozen, it is no longer walked by every full
        # collection and again at exit, which cost a `flask members import` of 20,000 rows a
        # quarter of its own CPU; forked Celery pool processes also keep sharing those pages
        # (see gc.freeze in the Python docs). Tests build many apps in one process and would
        # keep the garbage of every earlier one.
        gc.freeze()
    return app


def _init_extensions(app: Flask) -> None:
    db.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    redis_client.init_app(app)

    if app.config["SETTINGS"].is_sqlite:
        _tune_sqlite(app)


def _tune_sqlite(app: Flask) -> None:
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets the web read while a worker writes; foreign keys are off by default in SQLite.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app whose tasks run inside this Flask app's context (pallets' pattern)."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery = Celery(app.name, task_cls=FlaskTask)
    celery.config_from_object(
        celery_settings(
            redis_client.broker_url(app.config),
            tick_seconds=app.config["SCHEDULER_TICK_SECONDS"],
            sweep_seconds=app.config["SEND_SWEEP_SECONDS"],
            transport_options=redis_client.broker_options(app.config),
        )
    )
    celery.set_default()
    app.extensions["celery"] = celery
    return celery


def _register_blueprints(app: Flask) -> None:
    from app.api import init_api  # noqa: PLC0415 - a layer above the services, see the top
    from app.infra.bounds import IdConverter  # noqa: PLC0415 - a layer above the services
    from app.public import init_public  # noqa: PLC0415 - a layer above the services
    from app.web import init_web  # noqa: PLC0415 - a layer above the services

    # Before any route is added: an id no INTEGER column can hold matches no route (404).
    app.url_map.converters["int"] = IdConverter
    init_web(app)
    init_api(app)
    init_public(app)
