"""Actions: hosted petitions, their signatures, and what each alert brought (docs/architecture.md).

Owns `actions`, `action_versions`, `action_lists`, `action_responses` and `action_tallies`.
petitions.py writes and opens/closes actions; signing.py records one response per email
address per action (signing again updates it, never counts twice), subscribes a consenting
signer through the audience services, and bumps the campaign tallies in the same
transaction; counts.py serves the live count (an index-only count cached for a second in
Redis, never a hot counter row); reports.py reads the petition's own report and CSV;
public.py keeps a per-process snapshot of a public petition for a moment, so a page view
costs no query.

mail.py writes a signer's confirmation request or thank-you (the transactional task sends
it); retention.py blanks signers' IP addresses and user agents after tracking's period.

May call: services.audience (members, opt-in, suppressions), services.organization (the
organization's name), services.transports (the signer's email), app.infra, app.emails
(Markdown rendering, the email skeleton). Tracking's click redirect
mints the reference (app.infra.tokens.ActionRefSigner) without calling here; the campaign
report reads `action_tallies` from app.models, so stats never imports this package.

Invariants: UNIQUE (action, email); at rest the live count equals the counted responses and
each campaign's tally equals its counted responses by source.
"""

from app.services.actions.counts import live_count
from app.services.actions.petitions import (
    ActionError,
    PetitionData,
    create_petition,
    get_action,
    open_action_by_slug,
    transition,
    update_petition,
)
from app.services.actions.signing import (
    Attribution,
    Signature,
    SignOutcome,
    keep_response,
    remove_response,
    sign,
)

__all__ = [
    "ActionError",
    "Attribution",
    "PetitionData",
    "SignOutcome",
    "Signature",
    "create_petition",
    "get_action",
    "keep_response",
    "live_count",
    "open_action_by_slug",
    "remove_response",
    "sign",
    "transition",
    "update_petition",
]
