"""Configuration: settings classes read from the environment, logging, Celery and gunicorn."""
