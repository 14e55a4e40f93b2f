"""The OpenAPI document describes the errors the API really sends, and its CSV downloads.

A client generated from the document must be able to read every error: one envelope,
{"error": {"code", "message", "details"}}, declared once (components/schemas/Error) and used
by every error response of every operation.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from app.models import Role
from app.services.organization import users

METHODS = ("get", "post", "put", "patch", "delete")
CSV_OPERATIONS = {
    ("/api/v1/lists/{list_id}/export", "get"),
    ("/api/v1/segments/{segment_id}/export", "get"),
    ("/api/v1/stats/campaigns/{campaign_id}/outcomes.csv", "get"),
}


@pytest.fixture(scope="module")
def document(app) -> dict[str, Any]:
    return app.test_client().get("/api/v1/openapi.json").get_json()


def _resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        *_, kind, name = item["$ref"].split("/")
        item = document["components"][kind][name]
    return item


def _operations(document: dict[str, Any]):
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_the_error_schema_is_the_envelope(document):
    schemas = document["components"]["schemas"]
    error = schemas["Error"]
    assert error["required"] == ["error"]
    assert error["additionalProperties"] is False
    body = _resolve(document, error["properties"]["error"])
    assert set(body["properties"]) == {"code", "message", "details"}
    assert sorted(body["required"]) == ["code", "details", "message"]


def test_every_error_response_of_every_operation_uses_the_envelope(document):
    checked = 0
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        assert {"401", "403", "default"} <= set(responses), (path, method)
        if "{" in path:
            assert "404" in responses, (path, method)
        for status, response in responses.items():
            if status != "default" and status[0] not in "45":
                continue
            content = _resolve(document, response).get("content", {})
            assert list(content) == ["application/json"], (path, method, status)
            assert content["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }, (path, method, status)
            checked += 1
    assert checked > 200  # 59 operations, 4 or more error responses each


def test_csv_downloads_declare_text_csv(document):
    for path, method, operation in _operations(document):
        ok = operation["responses"].get("200", {})
        types = set(_resolve(document, ok).get("content", {}))
        if (path, method) in CSV_OPERATIONS:
            assert types == {"text/csv"}, path
        else:
            assert "text/csv" not in types, path


@pytest.fixture
def admin(db_session, make_user):
    issued = users.create_token(db_session, make_user(Role.ADMIN))
    viewer = users.create_token(db_session, make_user(Role.VIEWER))
    db_session.commit()
    return {"admin": issued.secret, "viewer": viewer.secret}


def test_real_errors_validate_against_the_document(client, document, admin):
    registry = Registry().with_resource("urn:doc", Resource.from_contents(document, DRAFT202012))
    schema = {"$ref": "urn:doc#/components/schemas/Error"}
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    bearer = {"Authorization": f"Bearer {admin['admin']}"}
    viewer = {"Authorization": f"Bearer {admin['viewer']}"}
    answers = [
        client.get("/api/v1/me"),  # 401
        client.post("/api/v1/lists", json={"name": "x"}, headers=viewer),  # 403
        client.get("/api/v1/lists/999999", headers=bearer),  # 404
        client.post("/api/v1/lists", json={"nme": "x"}, headers=bearer),  # 422, details
        client.get("/api/v1/no-such-thing", headers=bearer),  # 404 outside any operation
    ]
    assert [a.status_code for a in answers] == [401, 403, 404, 422, 404]
    for answer in answers:
        validator.validate(answer.get_json())
