"""/api/v1/petitions: hosted petitions and their signatures, in OSDI 1.2's shape."""

from __future__ import annotations

import math
from typing import Any, NoReturn

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import abort

from app.api.auth import api_role, current_api_user
from app.api.blueprint import Blueprint
from app.api.schemas.petitions import (
    PageArgsSchema,
    PetitionCreateSchema,
    PetitionPageSchema,
    PetitionSchema,
    SignatureSchema,
)
from app.extensions import db
from app.infra.redis_client import get_redis
from app.models import Action, ActionResponse, ActionStatus, Role
from app.services import NotFound
from app.services.actions import counts, petitions, signing

blp = Blueprint(
    "petitions_api",
    __name__,
    url_prefix="/petitions",
    description="Hosted petitions and signatures (OSDI 1.2 field names), for syncing with "
    "Action Network and other OSDI systems.",
)
ORIGIN = "Rallypoint"


def _invalid(error: petitions.ActionError | signing.SignError) -> NoReturn:
    db.session.rollback()
    status = 409 if error.code == "conflict" else 422
    abort(status, message=str(error), details={"field": error.field})
    raise AssertionError("abort always raises")


def _action_or_404(action_id: int) -> Action:
    try:
        return petitions.get_action(db.session, action_id)
    except NotFound:
        abort(404, message=f"No petition {action_id}.")
        raise AssertionError("abort always raises") from None


def _api_url(path: str) -> str:
    return f"{request.host_url.rstrip('/')}/api/v1{path}"


def _dump(action: Action) -> dict[str, Any]:
    version = action.version(action.default_language)
    base = str(current_app.config["PUBLIC_BASE_URL"]).rstrip("/")
    targets = [t.strip() for t in (version.target if version else "").split(";") if t.strip()]
    return {
        "identifiers": [f"rallypoint:{action.id}"],
        "origin_system": ORIGIN,
        "created_date": action.created_at,
        "modified_date": action.updated_at,
        "name": action.title,
        "title": version.title if version else action.title,
        "description": version.description if version else "",
        "summary": version.headline if version else "",
        "petition_text": version.petition_text if version else "",
        "target": [{"name": t} for t in targets],
        "browser_url": f"{base}/a/{action.slug}",
        "total_signatures": counts.live_count(db.session, get_redis(), action.id),
        "slug": action.slug,
        "status": action.status,
        "goal": action.goal,
        "default_language": action.default_language,
        "languages": [v.language for v in action.versions],
        "_links": {
            "self": {"href": _api_url(f"/petitions/{action.id}")},
            "osdi:signatures": {"href": _api_url(f"/petitions/{action.id}/signatures")},
            "osdi:record_signature_helper": {
                "href": _api_url(f"/petitions/{action.id}/signatures")
            },
        },
    }


def _apply(data: dict[str, Any], current: petitions.PetitionData) -> petitions.PetitionData:
    changes: dict[str, Any] = {}
    if "name" in data:
        changes["title"] = data["name"]
    for key in ("slug", "goal", "default_language"):
        if key in data:
            changes[key] = data[key]
    merged = petitions.merge(current, changes)
    language = merged.default_language
    version = dict(merged.versions.get(language) or dict.fromkeys(petitions.LIMITS, ""))
    mapping = {
        "title": "title",
        "description": "description",
        "summary": "headline",
        "petition_text": "petition_text",
    }
    for osdi, ours in mapping.items():
        if osdi in data:
            version[ours] = data[osdi]
    if "target" in data:
        version["target"] = "; ".join(t["name"] for t in data["target"])
    merged.versions = {**merged.versions, language: version}
    return merged


def _set_status(action: Action, status: str | None) -> None:
    if status is None or status == action.status:
        return
    if status == ActionStatus.DRAFT.value:
        abort(422, message="A petition can't go back to draft.", details={"field": "status"})
    petitions.transition(db.session, action, ActionStatus(status))


@blp.route("")
class Petitions(MethodView):
    @api_role(Role.VIEWER)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, PetitionPageSchema)
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """Petitions, newest first, paginated (OSDI collection: `_embedded.osdi:petitions`)."""
        page, per_page = args["page"], args["per_page"]
        total, items = petitions.petitions_page(db.session, page, per_page)
        return {
            "total_pages": max(1, math.ceil(total / per_page)),
            "per_page": per_page,
            "page": page,
            "total_records": total,
            "_embedded": {"osdi:petitions": [_dump(a) for a in items]},
        }

    @api_role(Role.ORGANIZER)
    @blp.arguments(PetitionCreateSchema)
    @blp.response(201, PetitionSchema)
    @blp.alt_response(409, description="Another action has this slug")
    @blp.alt_response(422, description="A field is missing, too long or wrong")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a petition (a draft unless `status` says open)."""
        try:
            start = petitions.PetitionData(title=data["name"])
            action = petitions.create_petition(
                db.session, _apply(data, start), owner_id=current_api_user().id
            )
            _set_status(action, data.get("status"))
        except petitions.ActionError as error:
            _invalid(error)
        db.session.commit()
        return _dump(action)


@blp.route("/<int:action_id>")
class PetitionItem(MethodView):
    @api_role(Role.VIEWER)
    @blp.response(200, PetitionSchema)
    def get(self, action_id: int) -> dict[str, Any]:
        """One petition with its live signature count."""
        return _dump(_action_or_404(action_id))

    @api_role(Role.ORGANIZER)
    @blp.arguments(PetitionSchema)
    @blp.response(200, PetitionSchema)
    @blp.alt_response(409, description="Another action has this slug")
    @blp.alt_response(422, description="A field is wrong, or the status change is not allowed")
    def put(self, data: dict[str, Any], action_id: int) -> dict[str, Any]:
        """Change the fields given; the others keep their value (OSDI's PUT)."""
        action = _action_or_404(action_id)
        try:
            petitions.update_petition(
                db.session, action, _apply(data, petitions.as_data(db.session, action))
            )
            _set_status(action, data.get("status"))
        except petitions.ActionError as error:
            _invalid(error)
        db.session.commit()
        return _dump(action)


def _dump_signature(action: Action, r: ActionResponse) -> dict[str, Any]:
    return {
        "identifiers": [f"rallypoint:{r.id}"],
        "origin_system": ORIGIN,
        "created_date": r.created_at,
        "modified_date": r.updated_at,
        "action_date": r.created_at,
        "comments": r.comment,
        "person": {
            "given_name": r.first_name,
            "family_name": r.last_name,
            "email_addresses": [{"address": r.email, "primary": True}],
            "postal_addresses": [
                {"postal_code": r.postal_code, "locality": r.city, "primary": True}
            ],
            "languages_spoken": [r.language],
        },
        "referrer_data": {"source": r.utm_source, "referrer": "", "website": ""},
        "consent": r.consent_given,
        "local": r.local,
        "phone": r.phone,
        "source": r.source,
        "campaign_id": r.campaign_id,
        "flagged": r.flagged,
        "_links": {
            "osdi:petition": {"href": _api_url(f"/petitions/{action.id}")},
        },
    }


@blp.route("/<int:action_id>/signatures")
class Signatures(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(PageArgsSchema, location="query")
    @blp.response(200, PetitionPageSchema)
    def get(self, args: dict[str, Any], action_id: int) -> dict[str, Any]:
        """Counted signatures, oldest first, paginated (`_embedded.osdi:signatures`)."""
        action = _action_or_404(action_id)
        page, per_page = args["page"], args["per_page"]
        total, rows = petitions.signatures_page(db.session, action, page, per_page)
        return {
            "total_pages": max(1, math.ceil(total / per_page)),
            "per_page": per_page,
            "page": page,
            "total_records": total,
            "_embedded": {"osdi:signatures": [_dump_signature(action, r) for r in rows]},
        }

    @api_role(Role.ORGANIZER)
    @blp.arguments(SignatureSchema)
    @blp.response(201, SignatureSchema)
    @blp.alt_response(422, description="The petition is not open, or a field is wrong")
    def post(self, data: dict[str, Any], action_id: int) -> dict[str, Any]:
        """Record a signature with its person (OSDI's record signature helper). Signing
        again with the same address updates the signature and counts nothing more."""
        action = _action_or_404(action_id)
        person = data["person"]
        postal = (person.get("postal_addresses") or [{}])[0]
        spoken = [code for code in person.get("languages_spoken") or [] if code in ("en", "fr")]
        signature = signing.Signature(
            email=person["email_addresses"][0]["address"],
            first_name=person["given_name"],
            last_name=person.get("family_name", ""),
            postal_code=postal.get("postal_code", ""),
            city=postal.get("locality", ""),
            local=data.get("local", ""),
            phone=data.get("phone", ""),
            comment=data.get("comments", ""),
            language=spoken[0] if spoken else action.default_language,
            consent=bool(data.get("consent")),
        )
        referrer = data.get("referrer_data") or {}
        attribution = signing.attribution_for(
            db.session,
            action,
            referral_code=referrer.get("referrer", ""),
            utm_source=referrer.get("source", ""),
        )
        try:
            outcome = signing.sign(
                db.session,
                action,
                signature,
                attribution,
                ip=request.remote_addr or "",
                user_agent=request.user_agent.string or "",
            )
        except signing.SignError as error:
            _invalid(error)
        db.session.commit()
        return _dump_signature(action, outcome.response)
