INSERT INTO member_imports (list_id, user_id, origin, filename, path, size_bytes, consent, status, error, rows, added, updated, unchanged, skipped, subscribed, not_subscribed, report, created_at, started_at, finished_at) VALUES (%(list_id)s::INTEGER, %(user_id)s::INTEGER, %(origin)s::VARCHAR, %(filename)s::VARCHAR, %(path)s::VARCHAR, %(size_bytes)s::BIGINT, %(consent)s::VARCHAR, %(status)s::VARCHAR, %(error)s::VARCHAR, %(rows)s::INTEGER, %(added)s::INTEGER, %(updated)s::INTEGER, %(unchanged)s::INTEGER, %(skipped)s::INTEGER, %(subscribed)s::INTEGER, %(not_subscribed)s::INTEGER, %(report)s::JSONB, %(created_at)s::TIMESTAMP WITH TIME ZONE, %(started_at)s::TIMESTAMP WITH TIME ZONE, %(finished_at)s::TIMESTAMP WITH TIME ZONE) RETURNING member_imports.id;

UPDATE member_imports SET status=%(status)s::VARCHAR, started_at=%(started_at)s::TIMESTAMP WITH TIME ZONE WHERE member_imports.id = %(member_imports_id)s::INTEGER;

SELECT pg_advisory_xact_lock(%(key)s);

SET LOCAL work_mem = '128MB';

SET LOCAL jit = off;

SELECT id FROM mailing_lists WHERE id = %(list_id)s FOR KEY SHARE;

SET LOCAL session_replication_role = replica;

SET LOCAL session_replication_role = origin;

SELECT count(*) FROM (SELECT 1 FROM members LIMIT %(limit)s) m;

SELECT email FROM suppressions;

DROP TABLE IF EXISTS import_chunk;

DROP TABLE IF EXISTS import_seen;

CREATE TEMPORARY TABLE import_chunk (line integer NOT NULL, email text, first_name text, last_name text, language text, postal_code text, local text, a0 text, skip text, member_id bigint) ON COMMIT DROP;

CREATE TEMPORARY TABLE import_seen (email text NOT NULL, line integer NOT NULL) ON COMMIT DROP;

TRUNCATE import_chunk;

SET LOCAL session_replication_role = replica;

SET LOCAL session_replication_role = origin;

SELECT count(*), count(*) FILTER (WHERE skip IS NULL), count(*) FILTER (WHERE skip IS NULL AND member_id IS NOT NULL) FROM import_chunk;

INSERT INTO member_import_issues (import_id, line, kind, email, reason)
SELECT %(import_id)s, line, %(kind)s, email, skip FROM import_chunk
WHERE skip IS NOT NULL ORDER BY line;

INSERT INTO member_import_issues (import_id, line, kind, email, reason)
SELECT %(import_id)s, w.line, %(kind)s, w.email, w.reason
FROM unnest(CAST(%(lines)s AS integer[]), CAST(%(emails)s AS text[]),
            CAST(%(reasons)s AS text[])) WITH ORDINALITY AS w(line, email, reason, n)
JOIN import_chunk c ON c.line = w.line AND c.skip IS NULL
ORDER BY w.line, w.n;

INSERT INTO import_seen (email, line) SELECT email, line FROM import_chunk WHERE skip IS NULL;

SET LOCAL session_replication_role = replica;

WITH new AS (
    INSERT INTO members (email, first_name, last_name, language, postal_code,
        local, attributes, consent_basis, consent_source, consent_at,
        consent_expires_at, consent_detail, created_at, updated_at)
    SELECT s.email, COALESCE(s.first_name, ''), COALESCE(s.last_name, ''),
        COALESCE(s.language, 'en'), COALESCE(s.postal_code, ''),
        COALESCE(s.local, ''), jsonb_strip_nulls(jsonb_build_object(CAST(%(k0)s AS text), s.a0)), CAST(%(c_basis)s AS text), %(c_source)s,
        CAST(%(c_at)s AS timestamptz), CAST(%(c_expires)s AS timestamptz),
        CAST(%(c_detail)s AS jsonb), %(now)s, %(now)s
    FROM import_chunk s
    WHERE s.skip IS NULL AND s.member_id IS NULL
    ORDER BY s.email
    RETURNING id, email
), subscribed AS (
    INSERT INTO subscriptions (member_id, list_id, status, source,
        subscribed_at, created_at, updated_at)
    SELECT new.id, %(list_id)s, %(status)s, %(source)s, %(now)s, %(now)s, %(now)s FROM new
    WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = new.email)
    RETURNING 1
)
SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM subscribed);

SET LOCAL session_replication_role = origin;

INSERT INTO member_import_issues (import_id, line, kind, email, reason)
SELECT %(import_id)s, s.line, %(kind)s, s.email, %(suppressed)s
FROM import_chunk s JOIN suppressions x ON x.email = s.email
WHERE s.skip IS NULL AND s.member_id IS NULL
ORDER BY s.line;

SELECT kind, CASE
    WHEN reason ~ '^duplicate of line \d+$' THEN 'duplicate in the file'
    WHEN reason ~ '^line \d+ is longer than ' THEN 'line too long'
    WHEN reason ~ '^field ''.*'' is longer than \d+ characters' THEN 'field too long'
    WHEN reason ~ '^field ''.*'' is not valid UTF-8' THEN 'not valid UTF-8'
    WHEN reason ~ '^field ''.*'' contains a NUL character'
        THEN 'contains a NUL character'
    ELSE substring(reason from '^(.*?)(?::| \(| ''|$)') END AS grp, count(*)
FROM member_import_issues WHERE import_id = %(import_id)s GROUP BY 1, 2;

DROP TABLE IF EXISTS import_chunk;

DROP TABLE IF EXISTS import_seen;

UPDATE member_imports SET status=%(status)s::VARCHAR, error=%(error)s::VARCHAR, rows=%(rows)s::INTEGER, added=%(added)s::INTEGER, skipped=%(skipped)s::INTEGER, subscribed=%(subscribed)s::INTEGER, not_subscribed=%(not_subscribed)s::INTEGER, report=%(report)s::JSONB, finished_at=%(finished_at)s::TIMESTAMP WITH TIME ZONE WHERE member_imports.id = %(member_imports_id)s::INTEGER;
