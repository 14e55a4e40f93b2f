"""The OpenAPI document tells the truth about errors: one envelope, on every error response.

The API answers every error as {"error": {"code", "message", "details"}} (api/__init__.py),
so that is the document's `Error` schema (flask-smorest's ERROR_SCHEMA, used for its own
422 and default responses), and this apispec plugin gives it to every error response an
operation declares without a body (alt_response(409, description=...)). It also declares
what every operation can answer: 401 and 403 (bearer token and role), and 404 where the
path names a resource.
"""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin

ERROR_SCHEMA_NAME = "Error"
_ERROR_CONTENT = {"application/json": {"schema": ERROR_SCHEMA_NAME}}
_COMMON = {
    "401": "No valid API token",
    "403": "The token's user does not have the role this needs",
}


class ErrorEnvelopePlugin(BasePlugin):
    """Fill every error response of every operation with the API's error envelope."""

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **_: Any
    ) -> None:
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            for status, description in _COMMON.items():
                responses.setdefault(status, {"description": description})
            if path and "{" in path:
                responses.setdefault("404", {"description": "No such resource"})
            for status, response in responses.items():
                is_error = str(status) == "default" or str(status)[0] in "45"
                if is_error and isinstance(response, dict) and "content" not in response:
                    response["content"] = dict(_ERROR_CONTENT)
