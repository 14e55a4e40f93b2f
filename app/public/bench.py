"""A bare "hello" route, only with RALLYPOINT_BENCH=1: the baseline of benchmarks/tracking.py."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("bench", __name__)


@bp.get("/bench/hello")
def hello() -> str:
    return "hello"
