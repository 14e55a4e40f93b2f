"""Every benchmark script imports: a refactor of the shared harness cannot break one unseen.

The benchmarks themselves are run by hand (`make bench-*`), not by the suite; this only
catches a name one of them imports from another that is gone.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted(
    p.stem
    for p in (Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py")
    if p.stem != "__init__"
)


@pytest.mark.parametrize("name", SCRIPTS)
def test_benchmark_imports(name):
    module = importlib.import_module(f"benchmarks.{name}")
    assert module.__doc__, f"benchmarks/{name}.py says what it measures"
