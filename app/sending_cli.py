"""`flask sending …`: the operator's hand on every campaign at once (docs/operations.md)."""

from __future__ import annotations

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup

from app.extensions import db
from app.infra import redis_client
from app.models import Campaign
from app.models.campaigns import CampaignStatus
from app.services import sending

sending_cli = AppGroup("sending", help="Campaigns being sent: list, pause all, resume.")


@sending_cli.command("list")
def list_command() -> None:
    """The campaigns sending, paused or scheduled, one a line."""
    rows = db.session.execute(
        sa.select(Campaign.id, Campaign.status, Campaign.send_at, Campaign.name)
        .where(
            Campaign.status.in_(
                [CampaignStatus.SENDING, CampaignStatus.PAUSED, CampaignStatus.SCHEDULED]
            )
        )
        .order_by(Campaign.id)
    ).all()
    for row in rows:
        when = f"{row.send_at:%Y-%m-%d %H:%M} UTC" if row.send_at else "-"
        click.echo(f"{row.id}\t{row.status}\t{when}\t{row.name}")
    if not rows:
        click.echo("No campaign is sending, paused or scheduled.")


@sending_cli.command("pause-all")
def pause_all_command() -> None:
    """Pause every sending campaign: nothing more leaves until each is resumed.

    A batch already handed to SendGrid completes; the rest stay queued in the ledger.
    Scheduled campaigns are not touched: they start when due (unschedule them in the app).
    """
    ids = list(
        db.session.scalars(sa.select(Campaign.id).where(Campaign.status == CampaignStatus.SENDING))
    )
    for campaign_id in ids:
        sending.pause(db.session, campaign_id, None)
        db.session.commit()
        click.echo(f"paused campaign {campaign_id}")
    click.echo(f"{len(ids)} campaign(s) paused.")


@sending_cli.command("resume")
@click.argument("campaign_id", type=int)
def resume_command(campaign_id: int) -> None:
    """Resume a paused campaign where it stopped."""
    try:
        sending.resume(
            db.session,
            campaign_id,
            None,
            client=redis_client.get_redis(),
            stall_seconds=float(current_app.config["SEND_STALL_SECONDS"]),
        )
    except (LookupError, sending.TransitionError) as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"resumed campaign {campaign_id}")
