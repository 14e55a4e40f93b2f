"""Deliveries: a partial index of the rows in doubt instead of ix_deliveries_campaign_status

ix_deliveries_campaign_status (campaign_id, status) held every delivery; every row the
freeze writes and every outcome of a send paid for it (about 2 us a recipient of
PostgreSQL's time, measured on 100,000 rows). Its one selective use was counting the rows
left 'unknown' (the campaign list, the report, a resend), which the partial index serves
at no cost to the send: a queued or sent row is not in it. Counts by status over a whole
campaign read ix_deliveries_campaign_batch (campaign_id, batch_no, status) as before.

Revision ID: unknown_rows
Revises: actions
Create Date: 2026-12-03 08:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'unknown_rows'
down_revision = 'actions'
branch_labels = None
depends_on = None

UNKNOWN = sa.text("status = 'unknown'")


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_campaign_unknown',
            ['campaign_id', 'batch_no'],
            unique=False,
            postgresql_where=UNKNOWN,
            sqlite_where=UNKNOWN,
        )
        batch_op.drop_index('ix_deliveries_campaign_status')


def downgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_campaign_status', ['campaign_id', 'status'], unique=False
        )
        batch_op.drop_index(
            'ix_deliveries_campaign_unknown', postgresql_where=UNKNOWN, sqlite_where=UNKNOWN
        )
