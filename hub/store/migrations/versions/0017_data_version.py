"""the data version as a counter (issue 18): `data_version`, one row, moved by every write of
records or revisions (hub/store/version.py).

Readers used the newest record id and revision id as the data version, which holds only while
ids commit in the order they were taken; so every PostgreSQL writer of a town took a lock from
allocating record ids to COMMIT, and the writers took turns for most of their work. Now a
writer moves this counter right before it writes its revisions: its row lock is the turn, from
there to COMMIT, and record ids may commit out of order (no reader relies on their order).

Revision ID: 0017
Revises: 0016
"""
from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('data_version',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('value', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.execute("INSERT INTO data_version (id, value) VALUES (1, 0)")


def downgrade() -> None:
    op.drop_table('data_version')
