"""The batch ledger (send_batches) and campaigns.frozen_at

A campaign can only finish once its audience is frozen (frozen_at, set by the freeze's own
transaction), and the batch — one SendGrid request — becomes the unit of the send's state:
claimed, in flight under a lease, sent, failed, or unknown until SendGrid's events settle it.
Existing ledgers are carried over: a campaign with deliveries is frozen; each batch is
queued if it still has queued rows, unknown if a crash left rows 'sending' or 'unknown'
(those rows become 'unknown'), else sent.

Revision ID: send_batches
Revises: 0008_members_local
Create Date: 2026-12-02 05:00:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'send_batches'
down_revision = '0008_members_local'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade():
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('frozen_at', sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        'send_batches',
        sa.Column('campaign_id', sa.Integer(), nullable=False),
        sa.Column('batch_no', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('language', sa.String(length=2), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('resends', sa.Integer(), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('claimed_upto', BigId, nullable=True),
        sa.Column('lease', sa.String(length=32), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'unknown', 'failed', 'skipped')",
            name=op.f('ck_send_batches_status'),
        ),
        sa.ForeignKeyConstraint(
            ['campaign_id'], ['campaigns.id'],
            name=op.f('fk_send_batches_campaign_id_campaigns'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('campaign_id', 'batch_no', name=op.f('pk_send_batches')),
    )
    with op.batch_alter_table('send_batches', schema=None) as batch_op:
        batch_op.create_index(
            'ix_send_batches_confirmed', ['claimed_at'], unique=False,
            postgresql_where=sa.text('confirmed_at IS NOT NULL'),
            sqlite_where=sa.text('confirmed_at IS NOT NULL'),
        )
        batch_op.create_index(
            'ix_send_batches_open', ['status'], unique=False,
            postgresql_where=sa.text("status IN ('sending', 'unknown')"),
            sqlite_where=sa.text("status IN ('sending', 'unknown')"),
        )

    # Carry existing ledgers over (run with the workers stopped, as every migration is).
    op.execute(
        """
        INSERT INTO send_batches (campaign_id, batch_no, language, size, status, attempts,
                                  resends, claimed_at)
        SELECT campaign_id, batch_no, MIN(language), COUNT(*),
               CASE WHEN SUM(CASE WHEN status = 'queued' THEN 1 ELSE 0 END) > 0 THEN 'queued'
                    WHEN SUM(CASE WHEN status IN ('sending', 'unknown') THEN 1 ELSE 0 END) > 0
                         THEN 'unknown'
                    WHEN SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END) > 0 THEN 'sent'
                    ELSE 'skipped' END,
               MAX(attempts), 0, MAX(updated_at)
          FROM deliveries
         GROUP BY campaign_id, batch_no
        """
    )
    op.execute("UPDATE deliveries SET status = 'unknown' WHERE status = 'sending'")
    op.execute(
        """
        UPDATE campaigns SET frozen_at = COALESCE(started_at, updated_at)
         WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.campaign_id = campaigns.id)
        """
    )


def downgrade():
    with op.batch_alter_table('send_batches', schema=None) as batch_op:
        batch_op.drop_index('ix_send_batches_open')
        batch_op.drop_index('ix_send_batches_confirmed')
    op.drop_table('send_batches')
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('frozen_at')
