"""The one global Flask-Limiter, kept for the session app while tests build other apps."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.extensions import limiter


@contextmanager
def session_limiter_kept() -> Iterator[None]:
    """Put the session app's Flask-Limiter back after apps built inside rebind it.

    The one global `limiter` keeps its storage on itself, and init_app updates its storage
    options dict in place, so both are restored (else a later `limiter.reset()` talks to the
    other app's Redis or Sentinel)."""
    saved = dict(limiter.__dict__)
    options = dict(limiter._storage_options)
    try:
        yield
    finally:
        limiter.__dict__.clear()
        limiter.__dict__.update(saved)
        limiter._storage_options = options
