"""Audience: the people an organization emails and what they agreed to.

Owns members (one row per normalised address), mailing lists and subscriptions, suppressions
(subscriptions.py), CASL consent (consent.py, with the SQL every send and every import
uses), saved segments, double opt-in with signed confirmation links (optin.py), the
one-person untracked notices it and actions send (notices.py), the
formula-safe CSV export, and the member import: imports/ (the service API in __init__,
the PostgreSQL COPY path and its named SQL, the portable path, progress) with its streaming
CSV reader member_csv/.

May call: app.infra, app.emails and services.transports (the opt-in confirmation and other notices).
Campaigns, sending, tracking and stats call audience; audience calls none of them.

Invariants: an address is stored, and looked up, in one form (members.email_key); an
unsubscribe or a suppression wins at once over every list, import and queued delivery, and
no import or form subscribes a suppressed address again.
"""
