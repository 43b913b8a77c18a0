"""A merchant's items by time, indexed: `ix_items_merchant_sort` on items (merchant_id, sort_at)
replaces `ix_items_merchant_id`.

The cockpit's list of participants who went quiet asks when each one last posted
(`StatsStore.last_posts`). Without this index the database grouped every item of the store
by merchant for it: 162 ms at 300,000 items, growing with the store; with it, one look per
merchant (1 ms). The index serves every query the old one on merchant_id alone did (its first
column), so a write still updates one index for it.

Revision ID: 0020
Revises: 0019
"""
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_items_merchant_sort', 'items', ['merchant_id', 'sort_at'])
    op.drop_index('ix_items_merchant_id', table_name='items')


def downgrade() -> None:
    op.create_index('ix_items_merchant_id', 'items', ['merchant_id'])
    op.drop_index('ix_items_merchant_sort', table_name='items')
