"""drop ix_items_source_id: the unique (source_id, external_id) index serves every lookup by
source, and each index costs a B-tree insert per ingested entry

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_items_source_id', table_name='items')


def downgrade() -> None:
    op.create_index('ix_items_source_id', 'items', ['source_id'])
