"""Infrastructure the services stand on: Redis, SQL helpers, signed tokens, health, spreadsheets.

redis_client.py keeps one connection pool per process; sql.py the dialect helpers of the bulk
paths (is_postgresql, INSERT ... ON CONFLICT for either dialect, ``= ANY(array)``, ANALYZE
after a bulk write); tokens.py the compact signed delivery tokens of tracking and unsubscribe
links; health.py the checks behind /healthz; spreadsheets.py the CSV writer every download
uses (formula-safe cells, ";" quoted, rows read on a connection the download owns).

May call: app.models, and nothing in app.services (the session type is imported for type
checking only), so every room can use it.

Invariants: nothing here knows a domain rule; a token verifies only with the server's secret
(or a fallback secret while one is rotated out).
"""
