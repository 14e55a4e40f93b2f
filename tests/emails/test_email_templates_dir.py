"""The email layouts are found through one setting, EMAIL_TEMPLATES_DIR, resolved from the root.

A checkout finds them in the top-level templates/emails/; an installed package (where that
folder is not inside the `app` package) points the setting at wherever they were put.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from app.emails import build_skeleton
from app.emails.render import templates_dir
from app.emails.samples import IDENTITIES, SAMPLES
from config.settings import EMAIL_TEMPLATES_DIR, TestingConfig

ROOT = Path(__file__).resolve().parents[2]


def _skeleton():
    return build_skeleton(
        SAMPLES["statement", "en"],
        IDENTITIES["en"],
        tracking=False,
        base_url="https://t.example.org",
        inert_url="https://t.example.org/inert",
    )


def test_the_default_is_the_top_level_templates_emails_of_the_checkout():
    assert EMAIL_TEMPLATES_DIR == ROOT / "templates" / "emails"
    assert (EMAIL_TEMPLATES_DIR / "base.html").is_file()
    configured = TestingConfig(environ={}).EMAIL_TEMPLATES_DIR
    assert configured == str(EMAIL_TEMPLATES_DIR)
    moved = TestingConfig(environ={"EMAIL_TEMPLATES_DIR": "/srv/rallypoint/emails"})
    assert moved.EMAIL_TEMPLATES_DIR == "/srv/rallypoint/emails"
    assert templates_dir() == EMAIL_TEMPLATES_DIR  # outside an app: the same default


def test_an_app_renders_from_the_folder_its_setting_names(other_app, tmp_path):
    folder = tmp_path / "emails"
    shutil.copytree(EMAIL_TEMPLATES_DIR, folder)
    base = folder / "base.html"
    base.write_text(
        base.read_text(encoding="utf-8").replace("</body>", "<!-- installed copy --></body>"),
        encoding="utf-8",
    )
    app = other_app(EMAIL_TEMPLATES_DIR=str(folder))
    with app.app_context():
        assert templates_dir() == folder
        assert "<!-- installed copy -->" in _skeleton().html
    assert "<!-- installed copy -->" not in _skeleton().html


def test_warm_layouts_compiles_every_layout_once(app):
    """The worker's parent compiles the layouts before it forks (workers/celery_app.py)."""
    from app.emails.content import LAYOUTS
    from app.emails.render import layout_environment, warm_layouts

    with app.app_context():
        env = layout_environment()
        assert env.cache is not None
        env.cache.clear()
        count = warm_layouts()
        cached = {name for (_, name) in env.cache}
    assert count >= 2 * len(LAYOUTS)
    wanted = {f"{layout}{suffix}" for layout in LAYOUTS for suffix in (".html", ".txt")}
    assert wanted <= cached
