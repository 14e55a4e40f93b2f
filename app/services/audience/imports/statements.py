"""The PostgreSQL import's SQL, one named statement per step (listmonk keeps queries.sql so).

Every step runs over one chunk of the file staged in the temporary table ``import_chunk``
(line, email, the standard fields, ``a0``… for custom columns, ``skip``, ``member_id``) and
``import_seen`` (each address the import has taken, with its line). postgres.CopyImport
runs them in this order per chunk: COUNT_CHUNK, RECORD_SKIPPED, RECORD_WARNINGS,
REMEMBER_SEEN, then update_members, NOT_SUBSCRIBED_ISSUES and SUBSCRIBE_EXISTING for rows of
existing members, insert_members for new ones and SUPPRESSED_NEW_ISSUES. Into an empty or small
members table, the surely new members of the chunk are COPYed first (COPY_NEW_MEMBERS,
COPY_NEW_SUBSCRIPTIONS, COPY_SEEN; new_members.py formats them).
tests/services/test_sql_snapshots.py keeps a snapshot of what runs.

Only generated column names and constants are ever interpolated into these strings; every
value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

STAGE_FIELDS = ("email", "first_name", "last_name", "language", "postal_code", "local")
STAGING_TABLES = ("import_chunk", "import_seen")
# Keeps the staging tables in memory (postgres.CopyImport._raise_temp_buffers says why).
TEMP_BUFFERS = "256MB"
# PostgreSQL accepts at most 100 function arguments: jsonb_build_object takes 40 pairs at a time.
_JSON_PAIRS_PER_CALL = 40

# --- the session ---------------------------------------------------------------------------

LOCK_MEMBER_INSERTS = "SELECT pg_advisory_xact_lock(:key)"
CHUNK_WORK_MEM = "SET LOCAL work_mem = '128MB'"
NO_JIT = "SET LOCAL jit = off"
RAISE_TEMP_BUFFERS = f"SET temp_buffers = '{TEMP_BUFFERS}'"
LOCK_LIST = "SELECT id FROM mailing_lists WHERE id = :list_id FOR KEY SHARE"
# Up to :limit members: is the table empty, small (postgres._FEW_MEMBERS) or neither.
COUNT_MEMBERS_UP_TO = "SELECT count(*) FROM (SELECT 1 FROM members LIMIT :limit) m"
CREATE_SEEN_TABLE = (
    "CREATE TEMPORARY TABLE import_seen (email text NOT NULL, line integer NOT NULL) ON COMMIT DROP"
)
EMPTY_CHUNK = "TRUNCATE import_chunk"


def drop_table(name: str) -> str:
    return f"DROP TABLE IF EXISTS {name}"


def create_chunk_table(attribute_count: int) -> str:
    """The staging table of a file with `attribute_count` custom columns (a0, a1, …)."""
    attributes = "".join(f", a{i} text" for i in range(attribute_count))
    return (
        "CREATE TEMPORARY TABLE import_chunk (line integer NOT NULL, email text, "
        "first_name text, last_name text, language text, postal_code text, local text"
        f"{attributes}, skip text, member_id bigint) ON COMMIT DROP"
    )


def copy_chunk(columns: Sequence[str]) -> str:
    """COPY of CSV data into `columns` of import_chunk; an empty quoted field reads as NULL."""
    text_columns = ", ".join(c for c in columns if c != "line")
    return (
        f"COPY import_chunk ({', '.join(columns)}) FROM STDIN "
        f"WITH (FORMAT csv, FORCE_NULL ({text_columns}))"
    )


# --- deciding each row ------------------------------------------------------------------------

COUNT_CHUNK = (
    "SELECT count(*), count(*) FILTER (WHERE skip IS NULL), "
    "count(*) FILTER (WHERE skip IS NULL AND member_id IS NOT NULL) FROM import_chunk"
)
RECORD_SKIPPED = """
    INSERT INTO member_import_issues (import_id, line, kind, email, reason)
    SELECT :import_id, line, :kind, email, skip FROM import_chunk
    WHERE skip IS NOT NULL ORDER BY line
    """
# The chunk's warnings whose rows were imported (a row found to be a duplicate of an
# earlier chunk is skipped, and its values with it).
RECORD_WARNINGS = """
    INSERT INTO member_import_issues (import_id, line, kind, email, reason)
    SELECT :import_id, w.line, :kind, w.email, w.reason
    FROM unnest(CAST(:lines AS integer[]), CAST(:emails AS text[]),
                CAST(:reasons AS text[])) WITH ORDINALITY AS w(line, email, reason, n)
    JOIN import_chunk c ON c.line = w.line AND c.skip IS NULL
    ORDER BY w.line, w.n
    """
REMEMBER_SEEN = (
    "INSERT INTO import_seen (email, line) SELECT email, line FROM import_chunk WHERE skip IS NULL"
)
# Into an empty members table: an address an earlier chunk took is a member by now.
MARK_DUPLICATES_OF_NEW_MEMBERS = """
    UPDATE import_chunk c SET skip = :placeholder FROM members m
    WHERE c.line = ANY(:lines) AND c.skip IS NULL AND m.email = c.email
    """
FIRST_LINES_SEEN = (
    "SELECT email, min(line) FROM import_seen WHERE email = ANY(:emails) GROUP BY email"
)
MARK_EARLIER_DUPLICATES = """
    UPDATE import_chunk c SET skip = 'duplicate of line ' || d.first_line
    FROM unnest(CAST(:lines AS integer[]), CAST(:firsts AS integer[]))
        AS d(line, first_line)
    WHERE c.line = d.line AND c.skip IS NULL
    """
MATCH_MEMBERS = """
    UPDATE import_chunk c SET member_id = m.id FROM members m
    WHERE c.skip IS NULL AND m.email = c.email
    """
NAME_EARLIER_LINES = """
    UPDATE member_import_issues i SET reason = 'duplicate of line ' || s.first_line
    FROM (
        SELECT seen.email, min(seen.line) AS first_line FROM import_seen seen
        WHERE seen.email IN (
            SELECT email FROM member_import_issues
            WHERE import_id = :import_id AND reason = :placeholder
        )
        GROUP BY seen.email
    ) s
    WHERE i.import_id = :import_id AND i.reason = :placeholder AND i.email = s.email
    """

# --- writing members and subscriptions --------------------------------------------------------


def attributes_json(keys: Sequence[str]) -> tuple[str, dict[str, str]]:
    """A jsonb expression of a row's (alias s) non-empty custom columns, and its key parameters."""
    if not keys:
        return "'{}'::jsonb", {}
    params = {f"k{i}": key for i, key in enumerate(keys)}
    parts = []
    for start in range(0, len(keys), _JSON_PAIRS_PER_CALL):
        pairs = ", ".join(
            f"CAST(:k{i} AS text), s.a{i}"
            for i in range(start, min(start + _JSON_PAIRS_PER_CALL, len(keys)))
        )
        parts.append(f"jsonb_strip_nulls(jsonb_build_object({pairs}))")
    return " || ".join(parts), params


_FIELDS = ("first_name", "last_name", "language", "postal_code", "local")


def update_members(attributes: str, replaces: str | None, *, renews_membership: bool) -> str:
    """UPDATE of the existing members (m) of the chunk's rows (s) whose values change.

    An empty cell keeps what is there; custom columns merge into the attributes. `replaces`
    is the SQL condition under which the import's consent (:c_basis, :c_source, :c_at,
    :c_expires, :c_detail) replaces the member's, None when the import records no consent;
    `renews_membership` clears membership_ended_at with it (a file of current members).
    Joined on the primary key found by MATCH_MEMBERS; rows whose values would not change are
    left alone, so the row count is the members really updated.
    """
    assignments = [f"{name} = COALESCE(s.{name}, m.{name})" for name in _FIELDS]
    changed = [f"COALESCE(s.{name}, m.{name}) IS DISTINCT FROM m.{name}" for name in _FIELDS]
    changed.append("(m.attributes || s.attrs) IS DISTINCT FROM m.attributes")
    assignments.append("attributes = m.attributes || s.attrs")
    if replaces is not None:
        changed.append(replaces)
        assignments += [
            f"consent_basis = CASE WHEN {replaces} THEN CAST(:c_basis AS text) "
            "ELSE m.consent_basis END",
            f"consent_source = CASE WHEN {replaces} THEN CAST(:c_source AS text) "
            "ELSE m.consent_source END",
            f"consent_at = CASE WHEN {replaces} THEN CAST(:c_at AS timestamptz) "
            "ELSE m.consent_at END",
            f"consent_expires_at = CASE WHEN {replaces} THEN "
            "CAST(:c_expires AS timestamptz) ELSE m.consent_expires_at END",
            f"consent_detail = CASE WHEN {replaces} THEN CAST(:c_detail AS jsonb) "
            "ELSE m.consent_detail END",
        ]
        if renews_membership:
            # They are in a file of current members: their membership has not ended.
            assignments.append(
                f"membership_ended_at = CASE WHEN {replaces} THEN NULL "
                "ELSE m.membership_ended_at END"
            )
    return f"""
    UPDATE members m SET {", ".join(assignments)}, updated_at = :now
    FROM (
        SELECT s.*, {attributes} AS attrs FROM import_chunk s
        WHERE s.skip IS NULL AND s.member_id IS NOT NULL
    ) s
    WHERE m.id = s.member_id AND ({" OR ".join(changed)})
    """  # noqa: S608 - only generated column names and constants are interpolated


NOT_SUBSCRIBED_ISSUES = """
    INSERT INTO member_import_issues (import_id, line, kind, email, reason)
    SELECT :import_id, s.line, :kind, s.email,
        CASE WHEN x.email IS NOT NULL THEN :suppressed ELSE :unsubscribed END
    FROM import_chunk s
    LEFT JOIN suppressions x ON x.email = s.email
    LEFT JOIN subscriptions sub ON sub.member_id = s.member_id AND sub.list_id = :list_id
    WHERE s.skip IS NULL AND s.member_id IS NOT NULL
      AND (x.email IS NOT NULL OR sub.status = :unsubscribed_status)
    ORDER BY s.line
    """
# Existing subscriptions (subscribed, pending or unsubscribed) stay as they are; suppressed
# addresses get none. Foreign keys are checked as usual here.
SUBSCRIBE_EXISTING = """
    INSERT INTO subscriptions (member_id, list_id, status, source, subscribed_at,
        created_at, updated_at)
    SELECT s.member_id, :list_id, :status, :source, :now, :now, :now
    FROM import_chunk s
    WHERE s.skip IS NULL AND s.member_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = s.email)
    ON CONFLICT (member_id, list_id) DO NOTHING
    """


def insert_members(attributes: str) -> str:
    """New members and their subscriptions in one statement (a data-modifying CTE).

    ORDER BY email: the unique email index is filled in key order within a chunk. Returns
    (members added, subscriptions added); suppressed addresses are added, not subscribed.
    """
    return f"""
    WITH new AS (
        INSERT INTO members (email, first_name, last_name, language, postal_code,
            local, attributes, consent_basis, consent_source, consent_at,
            consent_expires_at, consent_detail, created_at, updated_at)
        SELECT s.email, COALESCE(s.first_name, ''), COALESCE(s.last_name, ''),
            COALESCE(s.language, 'en'), COALESCE(s.postal_code, ''),
            COALESCE(s.local, ''), {attributes}, CAST(:c_basis AS text), :c_source,
            CAST(:c_at AS timestamptz), CAST(:c_expires AS timestamptz),
            CAST(:c_detail AS jsonb), :now, :now
        FROM import_chunk s
        WHERE s.skip IS NULL AND s.member_id IS NULL
        ORDER BY s.email
        RETURNING id, email
    ), subscribed AS (
        INSERT INTO subscriptions (member_id, list_id, status, source,
            subscribed_at, created_at, updated_at)
        SELECT new.id, :list_id, :status, :source, :now, :now, :now FROM new
        WHERE NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email = new.email)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM new), (SELECT count(*) FROM subscribed)
    """  # noqa: S608 - only generated column names and constants are interpolated


SUPPRESSED_NEW_ISSUES = """
    INSERT INTO member_import_issues (import_id, line, kind, email, reason)
    SELECT :import_id, s.line, :kind, s.email, :suppressed
    FROM import_chunk s JOIN suppressions x ON x.email = s.email
    WHERE s.skip IS NULL AND s.member_id IS NULL
    ORDER BY s.line
    """

# --- the report -------------------------------------------------------------------------------

# Grouped in SQL with run.reason_group's rules, so a file of a million duplicates returns a
# handful of rows, not a million.
REASON_COUNTS = r"""
    SELECT kind, CASE
        WHEN reason ~ '^duplicate of line \d+$' THEN 'duplicate in the file'
        WHEN reason ~ '^line \d+ is longer than ' THEN 'line too long'
        WHEN reason ~ '^field ''.*'' is longer than \d+ characters' THEN 'field too long'
        WHEN reason ~ '^field ''.*'' is not valid UTF-8' THEN 'not valid UTF-8'
        WHEN reason ~ '^field ''.*'' contains a NUL character'
            THEN 'contains a NUL character'
        ELSE substring(reason from '^(.*?)(?::| \(| ''|$)') END AS grp, count(*)
    FROM member_import_issues WHERE import_id = :import_id GROUP BY 1, 2
    """

# --- new members by COPY (new_members.py) -----------------------------------------------------

MEMBER_ID_SEQUENCE = "SELECT pg_get_serial_sequence('members', 'id')"
# One array: a row per id costs the client more than PostgreSQL's nextval. The sequence is
# named (MEMBER_ID_SEQUENCE): looked up for each id, it would cost five times as much.
RESERVE_MEMBER_IDS = (
    "SELECT array_agg(nextval(CAST(:sequence AS regclass))) FROM generate_series(1, :count)"
)
SUPPRESSED_ADDRESSES = "SELECT email FROM suppressions"
MEMBER_ADDRESSES = "SELECT email FROM members"
# Each column with the type of the value sent for it: binary COPY takes each value in its
# column's binary form, with no cast (text for varchar; jsonb values are passed as bytes
# already in jsonb's binary form, new_members._jsonb).
_NEW_MEMBER_COLUMNS = (
    ("id", "int8"),
    *((name, "text") for name in STAGE_FIELDS),
    ("attributes", "bytea"),
    ("consent_basis", "text"),
    ("consent_source", "text"),
    ("consent_at", "timestamptz"),
    ("consent_expires_at", "timestamptz"),
    ("consent_detail", "bytea"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
NEW_MEMBER_COLUMNS = tuple(name for name, _ in _NEW_MEMBER_COLUMNS)
NEW_MEMBER_TYPES = tuple(type_ for _, type_ in _NEW_MEMBER_COLUMNS)
_NEW_SUBSCRIPTION_COLUMNS = (
    ("member_id", "int8"),
    ("list_id", "int4"),
    ("status", "text"),
    ("source", "text"),
    ("subscribed_at", "timestamptz"),
    ("created_at", "timestamptz"),
    ("updated_at", "timestamptz"),
)
NEW_SUBSCRIPTION_COLUMNS = tuple(name for name, _ in _NEW_SUBSCRIPTION_COLUMNS)
NEW_SUBSCRIPTION_TYPES = tuple(type_ for _, type_ in _NEW_SUBSCRIPTION_COLUMNS)
COPY_NEW_MEMBERS = f"COPY members ({', '.join(NEW_MEMBER_COLUMNS)}) FROM STDIN (FORMAT binary)"
COPY_NEW_SUBSCRIPTIONS = (
    f"COPY subscriptions ({', '.join(NEW_SUBSCRIPTION_COLUMNS)}) FROM STDIN (FORMAT binary)"
)
SEEN_TYPES = ("text", "int4")
COPY_SEEN = "COPY import_seen (email, line) FROM STDIN (FORMAT binary)"
