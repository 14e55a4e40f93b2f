"""Stats: delivery figures read from counters and rollups, so a report costs the same at 1M.

counters.py owns campaign_stats, link_stats and campaign_hourly (incremental upserts, the
UTC hour_of their rollup and the report's timeline share, and recompute_stats to check them
against raw events); breakdown.py the rollup by local and by language; reports.py the read
models of the stats pages and the stats API; retention.py strips members' IP addresses and
user agents from old events and deletes old raw webhook batches.

May call: services.organization (the time zone), app.infra. The sender, the tracking
flusher and the webhook processor call counters and breakdown; stats calls none of them.

Invariants: every stored counter equals its recomputation from the raw events and the
ledger; a report reads counters, rollups and index ranges sized by what it shows, never a
scan of a campaign's events.
"""
