"""Logging set-up: one format for web, worker and beat, level from the settings."""

from __future__ import annotations

import logging.config


def configure_logging(level: str = "INFO") -> None:
    """Send every logger to stderr with the process name, so honcho's prefixes stay readable."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            },
            "handlers": {
                "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
            },
            "root": {"handlers": ["stderr"], "level": level},
            "loggers": {
                "werkzeug": {"level": "WARNING"},
                "sqlalchemy.engine": {"level": "WARNING"},
                "alembic.runtime.plugins": {"level": "WARNING"},
            },
        }
    )
