"""The API's Blueprint: flask-smorest's, with a parser that refuses what cannot be stored.

Every API module builds its blueprint from this class (flask-smorest's documented way to
change the arguments parser is a Blueprint subclass), so a number beyond INTEGER or a NUL
character in any argument, at any depth, is a 422 naming the field, never a database error.
"""

from __future__ import annotations

from typing import Any

import flask_smorest
from marshmallow import ValidationError
from webargs.flaskparser import FlaskParser

from app.infra.bounds import storage_problems


class StorableArgumentsParser(FlaskParser):
    """webargs' Flask parser, then a check of the loaded values (see app/infra/bounds.py)."""

    def parse(
        self, argmap: Any, req: Any = None, *, location: str | None = None, **kwargs: Any
    ) -> Any:
        data = super().parse(argmap, req, location=location, **kwargs)
        problems = storage_problems(data)
        if problems:
            request = req if req is not None else self.get_default_request()
            self.handle_error(
                ValidationError({location or self.location: problems}),
                request,
                self._get_schema(argmap, request),
                error_status_code=kwargs.get("error_status_code"),
                error_headers=kwargs.get("error_headers"),
            )
        return data


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StorableArgumentsParser()
