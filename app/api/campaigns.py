"""/api/v1/campaigns: write, read, preview and test-send campaigns; petition links."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NoReturn

from flask.views import MethodView
from flask_smorest import abort

from app.api.auth import api_role, current_api_user
from app.api.blueprint import Blueprint
from app.api.schemas.campaigns import (
    CampaignPatchSchema,
    CampaignSchema,
    CampaignSummarySchema,
    LinkSchema,
    PreviewRequestSchema,
    PreviewSchema,
    TestSendResultSchema,
    TestSendSchema,
)
from app.emails import Problem
from app.extensions import db
from app.models import Campaign, Link, Member, Role
from app.services.campaigns import authoring as service
from app.services.campaigns import previews
from app.services.campaigns.authoring import (
    CampaignConflict,
    CampaignError,
    CampaignInput,
    CampaignInvalid,
    VariantInput,
)

blp = Blueprint(
    "campaigns_api",
    __name__,
    url_prefix="/campaigns",
    description="Campaigns: write, preview and test them (organizers). Sending is separate.",
)


def _invalid(error: CampaignInvalid) -> NoReturn:
    db.session.rollback()
    abort(
        422,
        message="The campaign has problems; nothing was changed.",
        details={"problems": [_problem(p) for p in error.problems]},
    )
    raise AssertionError("abort always raises")


def _problem(problem: Problem) -> dict[str, Any]:
    return {"field": problem.field, "line": problem.line, "message": problem.message}


def _conflict(error: CampaignError) -> NoReturn:
    db.session.rollback()
    abort(409, message=str(error))
    raise AssertionError("abort always raises")


def _campaign_or_404(campaign_id: int) -> Campaign:
    campaign = service.get_campaign(db.session, campaign_id)
    if campaign is None:
        abort(404, message=f"No campaign {campaign_id}.")
    return campaign  # type: ignore[return-value]


def _input(data: dict[str, Any]) -> CampaignInput:
    variants = data.get("variants") or []
    by_language: dict[str, VariantInput] = {}
    for item in variants:
        language = item.get("language")
        if language is None:
            abort(422, message="Each variant needs its language (en or fr).")
        if language in by_language:
            abort(422, message=f"Two variants in {language}: give one per language.")
        by_language[language] = VariantInput(
            subject=item.get("subject", ""),
            preheader=item.get("preheader", ""),
            body=item.get("body", ""),
            body_format=item.get("body_format", "markdown"),
            fields=item.get("layout_fields", {}),
        )
    return CampaignInput(
        name=data["name"],
        layout=data["layout"],
        from_email=data["from_email"],
        reply_to=data["reply_to"],
        default_language=data["default_language"],
        variants=by_language,
        list_ids=data["list_ids"],
        segment_id=data["segment_id"],
    )


def _dump(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "layout": campaign.layout,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "from_email": campaign.from_email,
        "from_name": campaign.from_name,
        "reply_to": campaign.reply_to,
        "default_language": campaign.default_language,
        "list_ids": service.list_ids_of(db.session, campaign),
        "segment_id": campaign.segment_id,
        "variants": [
            {
                "language": v.language,
                "subject": v.subject,
                "preheader": v.preheader,
                "body": v.body,
                "body_format": v.body_format,
                "layout_fields": dict(v.fields or {}),
            }
            for v in campaign.variants
        ],
        "links": campaign.links,
        "send_at": campaign.send_at,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
    }


@blp.route("")
class Campaigns(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, CampaignSummarySchema(many=True))
    def get(self) -> list[dict[str, Any]]:
        """Campaigns, most recently changed first."""
        return [
            {
                "id": c.id,
                "name": c.name,
                "layout": c.layout,
                "status": c.status,
                "default_language": c.default_language,
                "languages": [v.language for v in c.variants],
                "updated_at": c.updated_at,
            }
            for c in service.list_campaigns(db.session)
        ]

    @api_role(Role.ORGANIZER)
    @blp.arguments(CampaignSchema)
    @blp.response(201, CampaignSchema)
    @blp.alt_response(422, description="Problems with the content, each with field and line")
    def post(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a draft. Templates are checked now: syntax errors, unknown merge fields
        and sandbox escapes are refused with their field and line."""
        try:
            campaign = service.create_campaign(
                db.session, _input(data), actor_id=current_api_user().id
            )
        except CampaignInvalid as error:
            _invalid(error)
        db.session.commit()
        return _dump(campaign)


@blp.route("/<int:campaign_id>")
class CampaignItem(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, CampaignSchema)
    def get(self, campaign_id: int) -> dict[str, Any]:
        """One campaign with its variants and links."""
        return _dump(_campaign_or_404(campaign_id))

    @api_role(Role.ORGANIZER)
    @blp.arguments(CampaignPatchSchema(partial=True))
    @blp.response(200, CampaignSchema)
    @blp.alt_response(409, description="The campaign is sending or done")
    @blp.alt_response(422, description="Problems with the content")
    def patch(self, data: dict[str, Any], campaign_id: int) -> dict[str, Any]:
        """Change a draft or scheduled campaign. Fields left out keep their value;
        `variants`, when given, replaces every language variant."""
        campaign = _campaign_or_404(campaign_id)
        current = service.input_of(db.session, campaign)
        merged = replace(
            current,
            **{k: data[k] for k in ("name", "layout", "from_email", "reply_to") if k in data},
        )
        if "default_language" in data:
            merged = replace(merged, default_language=data["default_language"])
        if "list_ids" in data:
            merged = replace(merged, list_ids=data["list_ids"])
        if "segment_id" in data:
            merged = replace(merged, segment_id=data["segment_id"])
        if "variants" in data:
            merged = replace(merged, variants=_input({**_defaults(), **data}).variants)
        try:
            service.update_campaign(db.session, campaign, merged)
        except CampaignInvalid as error:
            _invalid(error)
        except CampaignConflict as error:
            _conflict(error)
        db.session.commit()
        return _dump(campaign)

    @api_role(Role.ORGANIZER)
    @blp.response(204)
    @blp.alt_response(409, description="Only drafts can be deleted")
    def delete(self, campaign_id: int) -> None:
        """Delete a draft."""
        campaign = _campaign_or_404(campaign_id)
        try:
            service.delete_campaign(db.session, campaign)
        except CampaignConflict as error:
            _conflict(error)
        db.session.commit()


def _defaults() -> dict[str, Any]:
    return {
        "name": "",
        "layout": "",
        "from_email": "",
        "reply_to": "",
        "default_language": "en",
        "list_ids": [],
        "segment_id": None,
    }


@blp.route("/<int:campaign_id>/preview", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.arguments(PreviewRequestSchema)
@blp.response(200, PreviewSchema)
def preview(args: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Render the campaign as a member (or a sample member) would get it. Nothing is
    tracked: links are as written, there is no open pixel."""
    campaign = _campaign_or_404(campaign_id)
    member = None
    if args["member_id"] is not None:
        member = db.session.get(Member, args["member_id"])
        if member is None:
            abort(404, message=f"No member {args['member_id']}.")
    shown = previews.preview_campaign(
        db.session, campaign, member=member, language=args["language"]
    )
    return {
        "language": shown.language,
        "subject": shown.subject,
        "html": shown.html,
        "text": shown.text,
        "member_id": shown.member_id,
        "notes": list(shown.notes),
    }


@blp.route("/<int:campaign_id>/test-send", methods=["POST"])
@api_role(Role.ORGANIZER)
@blp.arguments(TestSendSchema)
@blp.response(202, TestSendResultSchema)
@blp.alt_response(422, description="Bad addresses, or a campaign that cannot be sent")
def test_send(args: dict[str, Any], campaign_id: int) -> dict[str, Any]:
    """Queue a test to up to five addresses: subject marked [TEST], no tracking, no stats."""
    campaign = _campaign_or_404(campaign_id)
    try:
        queued = previews.request_test_send(
            db.session,
            campaign,
            args["emails"],
            language=args["language"],
            member_id=args["member_id"],
        )
    except CampaignInvalid as error:
        _invalid(error)
    db.session.commit()
    return {"queued_to": queued}


@blp.route("/<int:campaign_id>/links")
class Links(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.response(200, LinkSchema(many=True))
    def get(self, campaign_id: int) -> list[Link]:
        """The campaign's links in order, with their petition flags."""
        return list(_campaign_or_404(campaign_id).links)


@blp.route("/<int:campaign_id>/links/<int:link_id>")
class LinkItem(MethodView):
    @api_role(Role.ORGANIZER)
    @blp.arguments(LinkSchema)
    @blp.response(200, LinkSchema)
    def patch(self, data: dict[str, Any], campaign_id: int, link_id: int) -> Link:
        """Flag a link as a petition (clicks on it count as petition clicks), or not."""
        campaign = _campaign_or_404(campaign_id)
        try:
            service.set_petition_flags(db.session, campaign, {link_id: data["is_petition"]})
        except CampaignError as error:
            db.session.rollback()
            abort(404, message=str(error))
        db.session.commit()
        return next(link for link in campaign.links if link.id == link_id)
