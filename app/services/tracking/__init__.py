"""Tracking: what comes back from a sent email — opens, clicks, unsubscribes, SendGrid events.

hits.py records hits as events, first-engagement times and counters (the flusher's work);
hit_buffer.py (the web process's buffer), hit_stream.py (the Redis stream between web and
flusher) and runtime.py (per-app state: signer, buffer, link cache, Apple's ranges) carry
hits there; machine_hits.py flags machine opens and automated clicks; unsubscribe_page.py
is what the public unsubscribe page shows and records; webhooks.py verifies and stores
SendGrid's signed Event Webhook posts and webhook_events.py applies their events.

May call: services.audience (unsubscribes, suppressions, finding a member by address),
services.stats (counters, the breakdown), services.campaigns (what an unsubscribe page
names), services.sending (the ledger a webhook event settles), app.infra.

Invariants: a hit is never lost (buffer, stream, flusher that acknowledges after its commit;
straight to the database when Redis is down) and counted once (hit ids; webhook events by
sg_event_id); a machine hit is flagged, never dropped.
"""
