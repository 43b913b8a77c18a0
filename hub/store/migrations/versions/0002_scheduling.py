"""scheduling: source leases, WebSub subscriptions, channel runs and the delivery ledger

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

_SOURCE_COLUMNS = [
    # Who is fetching the source right now, and until when that claim holds.
    ('lease_owner', sa.String()),
    ('lease_until', sa.DateTime(timezone=True)),
    # WebSub: none (NULL) | pending | live | denied | failed
    ('push_state', sa.String()),
    ('push_hub', sa.String()),
    ('push_topic', sa.String()),
    ('push_secret', sa.String()),
    ('push_requested_at', sa.DateTime(timezone=True)),
    ('push_lease_until', sa.DateTime(timezone=True)),
    ('push_error', sa.Text()),
]


def upgrade() -> None:
    for name, type_ in _SOURCE_COLUMNS:
        op.add_column('sources', sa.Column(name, type_, nullable=True))

    op.create_table('channels',
    sa.Column('id', sa.String(), nullable=False),
    sa.Column('schedule', sa.String(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_owner', sa.String(), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.String(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )

    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('channel_id', sa.String(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel_id', 'item_id', name='uq_deliveries_channel_item')
    )
    op.create_index('ix_deliveries_item_id', 'deliveries', ['item_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deliveries_item_id', table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_table('channels')
    with op.batch_alter_table('sources', schema=None) as batch_op:
        for name, _ in reversed(_SOURCE_COLUMNS):
            batch_op.drop_column(name)
