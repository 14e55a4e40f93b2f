"""`flask` commands: users, API tokens, demo data, imports, tracking, stats and retention."""

from __future__ import annotations

import json
from pathlib import Path

import click
import redis
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import AppGroup

from app import demo
from app.extensions import db
from app.infra import redis_client
from app.models import User
from app.sending_cli import sending_cli
from app.services.audience import imports, lists
from app.services.organization import users
from app.services.stats import breakdown, retention
from app.services.stats import counters as stats
from app.services.tracking import machine_hits
from app.setup_cli import lists_cli, org_cli

users_cli = AppGroup("users", help="Manage the people who log in.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")
demo_cli = AppGroup("demo", help="Demo data for `make run`.")
members_cli = AppGroup("members", help="Members and lists.")
tracking_cli = AppGroup("tracking", help="Opens, clicks and their counters.")
retention_cli = AppGroup("retention", help="How long personal data from tracking is kept.")


@users_cli.command("create")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(["admin", "organizer", "viewer"]))
@click.option("--name", default="")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="Prompted when omitted.",
)
def create_user_command(email: str, role: str, name: str, password: str) -> None:
    """Create a user who can log in."""
    try:
        user = users.create_user(db.session, email=email, password=password, role=role, name=name)
    except users.UserError as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Created {user.role} {user.email}")


@tokens_cli.command("create")
@click.option("--email", required=True)
@click.option("--name", default="cli")
def create_token_command(email: str, name: str) -> None:
    """Print a new API token for a user (shown once)."""
    user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise click.ClickException(f"No user with the email {email}.")
    issued = users.create_token(db.session, user, name=name)
    db.session.commit()
    click.echo(issued.secret)


@tokens_cli.command("revoke")
@click.option("--id", "token_id", required=True, type=int)
def revoke_token_command(token_id: int) -> None:
    """Revoke an API token by its id."""
    try:
        users.revoke_token(db.session, token_id)
    except users.UserError as exc:
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    click.echo(f"Revoked token {token_id}")


@demo_cli.command("load")
@click.option("--email", default="admin@example.org")
@click.option("--password", default="rallypoint-demo")
def load_demo_command(email: str, password: str) -> None:
    """Create the demo admin (and demo content) unless it exists; print the login."""

    created = demo.load(db.session, admin_email=email, admin_password=password)
    db.session.commit()
    click.echo(("Created" if created else "Kept") + f" demo admin {email} / {password}")


@members_cli.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--list", "list_name", required=True, help="The name of the list to add them to.")
@click.option(
    "--consent",
    type=click.Choice([c.value for c in imports.ImportConsent]),
    default=imports.ImportConsent.MEMBERSHIP.value,
    show_default=True,
    help="How these people agreed to hear from you (recorded where it adds to what is on file).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_members_command(path: str, list_name: str, consent: str, as_json: bool) -> None:
    """Import members from a CSV file into a list and print the report."""
    mailing_list = lists.list_by_name(db.session, list_name)
    if mailing_list is None:
        names = ", ".join(lst.name for lst in lists.all_lists(db.session)) or "(none yet)"
        raise click.ClickException(f"There is no list called {list_name!r}. Lists: {names}.")
    try:
        job, report = imports.import_members(
            db.session, path=path, list_id=mailing_list.id, origin="cli", consent=consent
        )
    except (imports.CsvRefused, imports.ImportError_) as exc:
        db.session.rollback()
        raise click.ClickException(str(exc)) from exc
    db.session.commit()
    if as_json:
        _echo_report_json(job.id, mailing_list.name, report)
    else:
        _echo_report_text(job.id, mailing_list.name, report)


def _echo_report_text(import_id: int, list_name: str, report: imports.ImportReport) -> None:
    click.echo(f"Imported {report.rows} rows into {list_name} in {report.seconds:.1f} s:")
    if report.note:
        click.echo(f"  {report.note}")
    click.echo(
        f"  {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.skipped} skipped"
    )
    click.echo(
        f"  {report.subscribed} newly subscribed, {report.already_on_list} already on the list, "
        f"{report.not_subscribed} not subscribed"
    )
    if report.warnings:
        click.echo(f"  {report.warnings} values left out (their members were imported)")
    shown = 0
    for issue in imports.issues_of(db.session, import_id, limit=50):
        if shown == 0:
            click.echo("Rows to look at (line, what happened: reason):")
        outcome = imports.ISSUE_OUTCOMES.get(issue.kind, issue.kind)
        click.echo(
            f"  line {issue.line}, {outcome}: {issue.reason}"
            + (f" ({issue.email})" if issue.email else "")
        )
        shown += 1
    more = report.skipped + report.not_subscribed + report.warnings - shown
    if more > 0:
        click.echo(f"  … and {more} more (use --json for all of them)")


def _echo_report_json(import_id: int, list_name: str, report: imports.ImportReport) -> None:
    # Issues are streamed out one by one, so a file with many bad rows stays flat in memory.
    body = {"import_id": import_id, "list": list_name, **report.to_dict()}
    head = json.dumps(body, ensure_ascii=False)
    click.echo(head[:-1] + ', "issues": [', nl=False)
    for n, issue in enumerate(imports.issues_of(db.session, import_id)):
        item = {
            "line": issue.line,
            "kind": issue.kind,
            "email": issue.email,
            "reason": issue.reason,
        }
        click.echo(("," if n else "") + json.dumps(item, ensure_ascii=False), nl=False)
    click.echo("]}")


@tracking_cli.command("load-apple-ranges")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def load_apple_ranges_command(path: Path) -> None:
    """Load Apple's egress-ip-ranges.csv (Private Relay / Mail Privacy Protection)."""

    with path.open(encoding="utf-8", newline="") as handle:
        parsed = machine_hits.parse_ranges(handle)
    if not parsed.networks:
        raise click.ClickException(f"{path} holds no IP prefixes; nothing was changed.")
    for number, text in parsed.skipped[:10]:
        click.echo(f"line {number}: not an IP prefix, skipped: {text}", err=True)
    target = Path(current_app.config["APPLE_RANGES_FILE"])
    written = machine_hits.write_ranges(parsed.networks, target)
    click.echo(
        f"Read {len(parsed.networks)} prefixes ({len(parsed.skipped)} lines skipped); "
        f"wrote {written} merged ranges to {target}. Workers reload it by themselves."
    )


@tracking_cli.command("verify-stats")
@click.argument("campaign_id", type=int)
def verify_stats_command(campaign_id: int) -> None:
    """Recompute a campaign's counters from raw events and compare with the stored ones."""

    stored = stats.stored_stats(db.session, campaign_id)
    computed = stats.recompute_stats(db.session, campaign_id)
    problems = [
        f"{name}: stored {stored.campaign[name]}, events say {computed.campaign[name]}"
        for name in stats.EVENT_COUNTERS
        if stored.campaign[name] != computed.campaign[name]
    ]
    if stored.links != computed.links:
        problems.append("per-link counters differ")
    if stored.hourly != computed.hourly:
        problems.append("hourly rollup differs")
    if problems:
        raise click.ClickException("Counters differ:\n  " + "\n  ".join(problems))
    click.echo(f"Campaign {campaign_id}: every counter matches its events.")


stats_cli = AppGroup("stats", help="The report's rollups.")


@stats_cli.command("verify-breakdown")
@click.argument("campaign_id", type=int)
def verify_breakdown_command(campaign_id: int) -> None:
    """Compare a campaign's per-local/language rollup with a recomputation from raw events."""

    stored = breakdown.stored_breakdown(db.session, campaign_id)
    computed = breakdown.recompute_breakdown(db.session, campaign_id)
    problems = [
        f"{dimension} {value or '(none)'}: stored {stored.get((dimension, value))}, "
        f"events say {computed.get((dimension, value))}"
        for dimension, value in sorted(set(stored) | set(computed))
        if stored.get((dimension, value)) != computed.get((dimension, value))
    ]
    if problems:
        raise click.ClickException("The breakdown differs:\n  " + "\n  ".join(problems[:50]))
    click.echo(f"Campaign {campaign_id}: the breakdown matches its events.")


@stats_cli.command("rebuild-breakdown")
@click.argument("campaign_id", type=int)
def rebuild_breakdown_command(campaign_id: int) -> None:
    """Rebuild a campaign's per-local/language rollup from raw events (backfill or repair)."""

    rows = breakdown.rebuild_breakdown(db.session, campaign_id)
    db.session.commit()
    click.echo(f"Campaign {campaign_id}: wrote {rows} breakdown rows.")


@retention_cli.command("run")
def run_retention_command() -> None:
    """Apply TRACKING_DETAIL_DAYS and WEBHOOK_BATCH_DAYS now and print what was removed."""

    config = current_app.config
    try:
        report = retention.purge(
            db.session,
            redis_client.get_redis(),
            tracking_days=int(config["TRACKING_DETAIL_DAYS"]),
            webhook_days=int(config["WEBHOOK_BATCH_DAYS"]),
            commit=db.session.commit,
        )
    except redis.RedisError as exc:
        raise click.ClickException(
            f"Redis is unreachable ({exc}); it holds the lock that keeps two runs apart. "
            "Start it or set REDIS_URL."
        ) from exc
    if report is None:
        raise click.ClickException("Another retention run is under way; try again later.")
    click.echo(
        f"Removed the IP address and user agent from {report.events_cleaned} events recorded "
        f"before {report.events_before:%Y-%m-%d %H:%M} UTC."
    )
    click.echo(
        f"Deleted {report.batches_deleted} processed webhook batches received before "
        f"{report.batches_before:%Y-%m-%d %H:%M} UTC."
    )
    if report.kept_unprocessed or report.kept_failed:
        click.echo(
            f"Kept {report.kept_unprocessed} unprocessed and {report.kept_failed} failed webhook "
            "batches older than that: they hold addresses; see webhook_batches.error, then "
            "process or delete them."
        )


def register_cli(app: Flask) -> None:
    app.cli.add_command(lists_cli)
    app.cli.add_command(org_cli)
    app.cli.add_command(members_cli)
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(demo_cli)
    app.cli.add_command(tracking_cli)
    app.cli.add_command(stats_cli)
    app.cli.add_command(retention_cli)
    app.cli.add_command(sending_cli)
