"""events as first-class data (issue 13): an event's coordinates, where its source gives
them (schema.org `geo`, iCalendar `GEO`).

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: no copy of a large items table.
    op.add_column('items', sa.Column('event_latitude', sa.Float(), nullable=True))
    op.add_column('items', sa.Column('event_longitude', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('items') as batch:
        batch.drop_column('event_longitude')
        batch.drop_column('event_latitude')
