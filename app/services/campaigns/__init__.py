"""Campaigns: what an organizer writes, and how it renders before anything is sent.

authoring.py owns campaigns and their language variants: save-time validation (every
variant renders, problems with field and line), the one status transition() checked
against the TRANSITIONS table, links and their petition flags, the per-process cache of
each variant's skeleton, the public archive and calendar (.ics) URLs and their signed
references. previews.py previews a campaign as a member or a sample (tracking off) and
sends tests on the transactional queue.

May call: app.infra, app.emails (rendering), services.transports (test sends). Sending and
tracking call campaigns (sending through sending/peers.py); campaigns calls neither.

Invariants: a campaign that does not render cannot be saved, so it can never be scheduled;
every status change goes through authoring.transition, one conditional UPDATE, so two
requests racing cannot both apply.
"""
