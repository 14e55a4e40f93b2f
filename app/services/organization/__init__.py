"""Organization: who sends, from which addresses, in which time zone, and who may act.

settings.py owns the one settings row: the CASL identity in every footer, the allowed
senders, and the organization's time zone (org_timezone: the zone send times are picked in
and every page shows). users.py owns users and their roles, argon2 passwords and API tokens.

May call: app.models only; every other room may call organization.

Invariants: one time zone rule for every page and the send panel (org_timezone); an API
token is stored as a SHA-256 hash and shown once.
"""
