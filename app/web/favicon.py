"""`/favicon.ico`: the icon browsers ask for on every page (base.html links the SVG as well).

app/static/favicon.ico holds favicon.svg (the brand mark) rendered by chromium at 16, 32 and
48 px, as PNGs inside one ICO file.
"""

from __future__ import annotations

from flask import Blueprint, current_app, send_from_directory
from flask.typing import ResponseReturnValue

bp = Blueprint("favicon", __name__)

# A week: the icon changes with a release at most, and every page would ask for it again.
MAX_AGE = 7 * 24 * 3600


@bp.route("/favicon.ico")
def favicon() -> ResponseReturnValue:
    return send_from_directory(
        str(current_app.static_folder),
        "favicon.ico",
        mimetype="image/vnd.microsoft.icon",
        max_age=MAX_AGE,
    )
