"""identity candidates from keys, not from a merchant's whole window: posts of merchants with
several sources are found by post keys in identity_keys (hub.identity.index_keys); keys that
too many items share are noted in identity_common_keys and skipped. The (merchant, time)
index now holds only origins without text features (title_key IS NULL): those of a merchant's
first source, fingerprinted once it has a second. Existing origins lose their text features,
so they are fingerprinted again, with post keys, when they are first needed.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_record_origins_merchant_at', table_name='record_origins')
    op.execute("UPDATE record_origins SET title_key = NULL WHERE title_key IS NOT NULL")
    op.create_index('ix_record_origins_unkeyed', 'record_origins', ['merchant_id', 'at'],
                    sqlite_where=sa.text('title_key IS NULL'), postgresql_where=sa.text('title_key IS NULL'))
    op.create_table('identity_common_keys',
    sa.Column('key', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('day', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_index('ix_identity_common_keys_day', 'identity_common_keys', ['day'])


def downgrade() -> None:
    op.drop_index('ix_identity_common_keys_day', table_name='identity_common_keys')
    op.drop_table('identity_common_keys')
    op.drop_index('ix_record_origins_unkeyed', table_name='record_origins')
    op.create_index('ix_record_origins_merchant_at', 'record_origins', ['merchant_id', 'at'])
