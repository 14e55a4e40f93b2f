"""Migration files: a listing of migrations/versions reads in the order the upgrade runs them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def _scripts() -> ScriptDirectory:
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def _upgrade_order(scripts: ScriptDirectory) -> list:
    # walk_revisions goes from head down to base; the upgrade runs the other way.
    return list(reversed(list(scripts.walk_revisions("base", "heads"))))


def test_one_head() -> None:
    assert len(_scripts().get_heads()) == 1


def test_sorted_file_names_are_the_upgrade_order() -> None:
    scripts = _scripts()
    files = sorted(path.name for path in (MIGRATIONS / "versions").glob("*.py"))
    ordered = [Path(script.path).name for script in _upgrade_order(scripts)]
    assert files == ordered


def test_each_file_name_is_date_time_revision_id_slug() -> None:
    for script in _upgrade_order(_scripts()):
        name = Path(script.path).name
        pattern = rf"\d{{8}}_\d{{4}}_{re.escape(script.revision)}(_[a-z0-9_]+)?\.py"
        assert re.fullmatch(pattern, name), f"{name} does not name revision {script.revision}"


def test_a_new_revision_gets_a_file_name_that_sorts_last(tmp_path: Path) -> None:
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = Config(str(copy / "alembic.ini"))
    config.set_main_option("script_location", str(copy))
    script = command.revision(config, message="Day of action events", rev_id="events")
    assert isinstance(script, Script)
    name = Path(script.path).name
    assert re.fullmatch(r"\d{8}_\d{4}_events_day_of_action_events\.py", name)
    assert sorted(path.name for path in (copy / "versions").glob("*.py"))[-1] == name
