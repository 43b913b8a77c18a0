"""token checks (issue 12): what Facebook's debug_token said about each source's token
(validity, expiry, scopes; never the token), with the fingerprint of the options it was
checked with

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('token_checks',
                    sa.Column('source_id', sa.String(), nullable=False),
                    sa.Column('fingerprint', sa.String(), nullable=True),
                    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('result', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('source_id'))


def downgrade() -> None:
    op.drop_table('token_checks')
