"""Schemas of the sending endpoints: a schedule, and a campaign's progress."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class ScheduleSchema(Schema):
    send_at = fields.DateTime(
        required=True,
        metadata={
            "description": "Wall-clock time in `timezone`, e.g. 2025-12-17T09:00:00. "
            "An offset (…T09:00:00-07:00) is also accepted and wins over `timezone`."
        },
    )
    timezone = fields.String(
        load_default=None,
        validate=validate.Length(max=64),
        metadata={"description": "IANA time zone; the organization's when omitted."},
    )


class ErrorCountSchema(Schema):
    message = fields.String()
    count = fields.Integer()
    kind = fields.String(
        metadata={
            "description": "failed: SendGrid refused these for good (its message); unknown: "
            "a worker stopped while sending them and they may not have received it."
        }
    )


class ProgressSchema(Schema):
    campaign_id = fields.Integer()
    status = fields.String(metadata={"description": "draft, scheduled, sending, paused, sent…"})
    status_label = fields.String()
    reason = fields.String(metadata={"description": "Why it paused or was cancelled."})
    frozen = fields.Boolean(metadata={"description": "Whether the audience is fixed yet."})
    total = fields.Integer(metadata={"description": "Recipients (the audience count before)."})
    queued = fields.Integer()
    sending = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()
    skipped = fields.Integer()
    # `unknown` is a reserved name on a marshmallow Schema.
    unknown_count = fields.Integer(
        attribute="unknown",
        data_key="unknown",
        metadata={
            "description": "May not have received it: a worker stopped while sending them. "
            "Never sent twice blindly; see unknown_state."
        },
    )
    unknown_state = fields.String(
        metadata={
            "description": "settling: SendGrid's events will show whether they left (those "
            "that never did are sent again automatically); undecided: nothing can tell, "
            "POST …/resend-unknown to send to them now (some may get a second copy); empty "
            "when none are unknown."
        }
    )
    percent = fields.Float()
    rate_per_minute = fields.Float()
    seconds_left = fields.Integer(allow_none=True)
    errors = fields.List(fields.Nested(ErrorCountSchema))
    send_at = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
