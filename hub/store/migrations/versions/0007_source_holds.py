"""source holds and media refreshes (issue 12): a source whose token is invalid is held back
until its options change (their fingerprint is kept per source); an expired image URL is
re-read once for a fresh one

Revision ID: 0007
Revises: 0006
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('source_holds',
                    sa.Column('source_id', sa.String(), nullable=False),
                    sa.Column('fingerprint', sa.String(), nullable=True),
                    sa.Column('hold', sa.String(), nullable=True),
                    sa.Column('held_at', sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('source_id'))
    op.create_table('media_refreshes',
                    sa.Column('url_key', sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column('source_id', sa.String(), nullable=False),
                    sa.Column('external_id', sa.String(), nullable=False),
                    sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('outcome', sa.Text(), nullable=True),
                    sa.PrimaryKeyConstraint('url_key'))


def downgrade() -> None:
    op.drop_table('media_refreshes')
    op.drop_table('source_holds')
