"""Drop ix_members_local: no query uses it, and every imported member paid for it

Segments match locals case-insensitively (lower(local)), which a plain btree on local
cannot serve; the report's breakdown reads deliveries.local. Maintaining the index cost
the member import about 2 us a row (a tenth of its time at a million rows).

Revision ID: 0008_members_local
Revises: 0003_audience
Create Date: 2026-11-23 16:20:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0008_members_local'
down_revision = '0003_audience'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('ix_members_local')


def downgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.create_index('ix_members_local', ['local'], unique=False)
