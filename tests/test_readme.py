"""The README stays true: every setting and command is listed, every link is a file here."""

from __future__ import annotations

import os
import re
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config.settings import CONFIGS, config_from_env

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
# Set by scripts/test-offline.sh for its own second run inside the namespace: not a setting.
SCRIPT_INTERNAL = frozenset({"RALLYPOINT_IN_NETNS"})
# Where variables that are not settings of the app are read: benchmarks and tests.
OS_ENVIRON_READ = re.compile(r"""(?:os\.environ\.get|os\.getenv)\(\s*["']([A-Z][A-Z0-9_]*)["']""")


class RecordingEnviron(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def _section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _listed_variables() -> set[str]:
    """Names in the first column of the tables under README's "Configuration"."""
    names: set[str] = set()
    for line in _section(README.read_text(encoding="utf-8"), "Configuration").splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split(" | ")[0]))
    return names


def _settings_reads() -> set[str]:
    read: set[str] = set()
    for name in CONFIGS:
        environ = RecordingEnviron(
            {
                "RALLYPOINT_ENV": name,
                "SECRET_KEY": "x" * 40,
                "DATABASE_URL": "postgresql://db/rallypoint",
            }
        )
        config = config_from_env(environ)
        config.validate()
        read |= environ.read
    return read


def _gunicorn_reads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    environ = RecordingEnviron(dict(os.environ))
    monkeypatch.setattr(os, "environ", environ)
    runpy.run_path(str(ROOT / "config" / "gunicorn.conf.py"))
    monkeypatch.undo()
    return environ.read


def _shell_reads() -> set[str]:
    """`${NAME:-…}`-style reads in the Procfile and the scripts behind make."""
    found: set[str] = set()
    for path in [ROOT / "Procfile", *sorted((ROOT / "scripts").glob("*.sh"))]:
        text = path.read_text(encoding="utf-8")
        # ${NAME…} but not ${ARRAY[@]}: arrays are the scripts' own lists.
        found.update(re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?![A-Z0-9_\[])", text))
    return found - SCRIPT_INTERNAL


def _python_reads() -> set[str]:
    found: set[str] = set()
    for folder in ("app", "workers", "config", "benchmarks", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            found.update(OS_ENVIRON_READ.findall(path.read_text(encoding="utf-8")))
    return found


def test_every_variable_the_code_reads_is_in_the_readme(monkeypatch) -> None:
    read = _settings_reads() | _gunicorn_reads(monkeypatch) | _shell_reads() | _python_reads()
    missing = sorted(read - _listed_variables())
    assert missing == [], f"README.md's Configuration tables do not list {missing}"


def test_every_variable_in_the_readme_is_read_somewhere() -> None:
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in ("app", "workers", "config", "benchmarks", "tests", "scripts")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in {".py", ".sh"}
    )
    sources += (ROOT / "Procfile").read_text() + (ROOT / "Makefile").read_text()
    sources = sources.replace(Path(__file__).read_text(encoding="utf-8"), "")
    stale = sorted(name for name in _listed_variables() if name not in sources)
    assert stale == [], f"README.md lists settings nothing reads: {stale}"


def _commands(app) -> Iterator[str]:
    for group_name, group in sorted(app.cli.commands.items()):
        for command_name in sorted(getattr(group, "commands", {})):
            yield f"flask {group_name} {command_name}"


# Command groups that come with an extension: the README names the group and its main command.
EXTENSION_GROUPS = {"db": "flask db upgrade", "openapi": "flask openapi write"}


def test_every_flask_command_is_in_the_readme(app) -> None:
    readme = README.read_text(encoding="utf-8")
    ours = [c for c in _commands(app) if c.split()[1] not in EXTENSION_GROUPS]
    assert len(ours) >= 12
    missing = [command for command in ours if f"`{command}" not in readme]
    assert missing == [], f"README.md does not list {missing}"
    for command in EXTENSION_GROUPS.values():
        assert f"`{command}" in readme


def _links(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks hold no links
    return re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_point_at_files_in_the_repository(page: Path) -> None:
    for target in _links(page):
        if target.startswith(("http://", "https://")):
            assert target.startswith("http://localhost:"), f"{page.name} links outside: {target}"
            continue
        resolved = (page.parent / target.split("#")[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        assert resolved.exists(), f"{page.name} links to a missing file: {target}"


def test_the_readme_shows_the_tour_images() -> None:
    images = re.findall(r"!\[[^\]]+\]\((docs/images/[^)]+\.png)\)", README.read_text())
    assert len(images) >= 2
    for image in images:
        assert (ROOT / image).stat().st_size < 200_000, f"{image} is not a small PNG"
