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

SELECT email FROM members;

DROP TABLE IF EXISTS import_chunk;

DROP TABLE IF EXISTS import_seen;

CREATE TEMPORARY TABLE import_chunk (line integer NOT NULL, email text, first_name text, last_name text, language text, postal_code text, local text, a0 text, skip text, member_id bigint) ON COMMIT DROP;

CREATE TEMPORARY TABLE import_seen (email text NOT NULL, line integer NOT NULL) ON COMMIT DROP;

TRUNCATE import_chunk;

SET LOCAL session_replication_role = replica;

SET LOCAL session_replication_role = origin;

UPDATE import_chunk c SET member_id = m.id FROM members m
WHERE c.skip IS NULL AND m.email = c.email;

SELECT count(*), count(*) FILTER (WHERE skip IS NULL), count(*) FILTER (WHERE skip IS NULL AND member_id IS NOT NULL) FROM import_chunk;

INSERT INTO member_import_issues (import_id, line, kind, email, reason)
SELECT %(import_id)s, line, %(kind)s, email, skip FROM import_chunk
WHERE skip IS NOT NULL ORDER BY line;

INSERT INTO import_seen (email, line) SELECT email, line FROM import_chunk WHERE skip IS NULL;

UPDATE members m SET first_name = COALESCE(s.first_name, m.first_name), last_name = COALESCE(s.last_name, m.last_name), language = COALESCE(s.language, m.language), postal_code = COALESCE(s.postal_code, m.postal_code), local = COALESCE(s.local, m.local), attributes = m.attributes || s.attrs, consent_basis = CASE WHEN (m.consent_basis IS NULL OR 2 > CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END OR (m.consent_basis = CAST(%(c_basis)s AS text) AND m.consent_expires_at IS NOT NULL)) THEN CAST(%(c_basis)s AS text) ELSE m.consent_basis END, consent_source = CASE WHEN (m.consent_basis IS NULL OR 2 > CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END OR (m.consent_basis = CAST(%(c_basis)s AS text) AND m.consent_expires_at IS NOT NULL)) THEN CAST(%(c_source)s AS text) ELSE m.consent_source END, consent_at = CASE WHEN (m.consent_basis IS NULL OR 2 > CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END OR (m.consent_basis = CAST(%(c_basis)s AS text) AND m.consent_expires_at IS NOT NULL)) THEN CAST(%(c_at)s AS timestamptz) ELSE m.consent_at END, consent_expires_at = CASE WHEN (m.consent_basis IS NULL OR 2 > CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END OR (m.consent_basis = CAST(%(c_basis)s AS text) AND m.consent_expires_at IS NOT NULL)) THEN CAST(%(c_expires)s AS timestamptz) ELSE m.consent_expires_at END, consent_detail = CASE WHEN (m.consent_basis IS NULL OR 2 > CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END OR (m.consent_basis = CAST(%(c_basis)s AS text) AND m.consent_expires_at IS NOT NULL)) THEN CAST(%(c_detail)s AS jsonb) ELSE m.consent_detail END, membership_ended_at = CASE WHEN (m.consent_basis IS NULL OR 2 > CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END OR (m.consent_basis = CAST(%(c_basis)s AS text) AND m.consent_expires_at IS NOT NULL)) THEN NULL ELSE m.membership_ended_at END, updated_at = %(now)s
FROM (
    SELECT s.*, jsonb_strip_nulls(jsonb_build_object(CAST(%(k0)s AS text), s.a0)) AS attrs FROM import_chunk s
    WHERE s.skip IS NULL AND s.member_id IS NOT NULL
) s
WHERE m.id = s.member_id AND (COALESCE(s.first_name, m.first_name) IS DISTINCT FROM m.first_name OR COALESCE(s.last_name, m.last_name) IS DISTINCT FROM m.last_name OR COALESCE(s.language, m.language) IS DISTINCT FROM m.language OR COALESCE(s.postal_code, m.postal_code) IS DISTINCT FROM m.postal_code OR COALESCE(s.local, m.local) IS DISTINCT FROM m.local OR (m.attributes || s.attrs) IS DISTINCT FROM m.attributes OR (m.consent_basis IS NULL OR 2 > CASE m.consent_basis WHEN 'express' THEN 3 WHEN 'implied_membership' THEN 2 WHEN 'implied_other' THEN 1 WHEN 'implied_inquiry' THEN 1 ELSE 0 END OR (m.consent_basis = CAST(%(c_basis)s AS text) AND m.consent_expires_at IS NOT NULL)));

INSERT INTO member_import_issues (import_id, line, kind, email, reason)
SELECT %(import_id)s, s.line, %(kind)s, s.email,
    CASE WHEN x.email IS NOT NULL THEN %(suppressed)s ELSE %(unsubscribed)s END
FROM import_chunk s
LEFT JOIN suppressions x ON x.email = s.email
LEFT JOIN subscriptions sub ON sub.member_id = s.member_id AND sub.list_id = %(list_id)s
WHERE s.skip IS NULL AND s.member_id IS NOT NULL
  AND (x.email IS NOT NULL OR sub.status = %(unsubscribed_status)s)
ORDER BY s.line;

INSERT INTO subscriptions (member_id, list_id, status, source, subscribed_at,
    created_at, updated_at)
SELECT s.member_id, %(list_id)s, %(status)s, %(source)s, %(now)s, %(now)s, %(now)s
FROM import_chunk s
WHERE s.skip IS NULL AND s.member_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
ON CONFLICT (member_id, list_id) DO NOTHING;

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

UPDATE member_imports SET status=%(status)s::VARCHAR, error=%(error)s::VARCHAR, rows=%(rows)s::INTEGER, added=%(added)s::INTEGER, updated=%(updated)s::INTEGER, skipped=%(skipped)s::INTEGER, subscribed=%(subscribed)s::INTEGER, not_subscribed=%(not_subscribed)s::INTEGER, report=%(report)s::JSONB, finished_at=%(finished_at)s::TIMESTAMP WITH TIME ZONE WHERE member_imports.id = %(member_imports_id)s::INTEGER;
