"""Once the app is built, what start-up made is kept out of the cyclic collector's way."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_AND_COUNT = (
    "import gc, os\n"
    "from app import create_app\n"
    "from config.settings import config_from_env\n"
    "create_app(config_from_env())\n"
    "print(gc.get_freeze_count())\n"
)


def _frozen_after_create_app(test_environ: dict[str, str], env_name: str) -> int:
    env = {**test_environ, "RALLYPOINT_ENV": env_name, "PYTHONPATH": str(ROOT), "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", BUILD_AND_COUNT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("env_name", ["development", "production"])
def test_a_command_worker_or_web_process_freezes_what_start_up_built(test_environ, env_name):
    # A `flask members import` of 20,000 rows spent a quarter of its CPU walking these
    # objects in full collections and at exit.
    environ = {**test_environ, "SECRET_KEY": "x" * 40}
    assert _frozen_after_create_app(environ, env_name) > 50_000


def test_the_test_suite_builds_apps_without_freezing(test_environ):
    assert _frozen_after_create_app(test_environ, "testing") == 0
