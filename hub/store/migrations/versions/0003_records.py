"""canonical records: one per real thing, with origins, revisions, splits and media

Revision ID: 0003
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0001'
branch_labels = None
depends_on = None


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('records',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('merchant_id', sa.String(), nullable=False),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('status_by', sa.String(), nullable=False),
    sa.Column('status_reason', sa.String(), nullable=True),
    _when('sort_at'),
    sa.Column('sort_day', sa.String(), nullable=True),
    _when('event_start'),
    _when('expires_at'),
    sa.Column('snapshot', sa.Text(), nullable=False),
    _when('created_at', nullable=False),
    _when('changed_at', nullable=False),
    _when('removed_at'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_records_listing', 'records', ['status', 'removed_at', 'sort_at'])

    op.create_table('record_origins',
    sa.Column('item_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.String(), nullable=False),
    sa.Column('merchant_id', sa.String(), nullable=False),
    sa.Column('live', sa.Boolean(), nullable=False),
    _when('at', nullable=False),
    sa.Column('url_key', sa.BigInteger(), nullable=True),
    sa.Column('event_day', sa.Integer(), nullable=True),
    _when('event_start'),
    sa.Column('event_all_day', sa.Boolean(), nullable=False),
    sa.Column('event_detected', sa.Boolean(), nullable=False),
    sa.Column('title_key', sa.String(), nullable=True),
    sa.Column('place_key', sa.String(), nullable=True),
    sa.Column('simhash', sa.BigInteger(), nullable=True),
    sa.Column('text_words', sa.Integer(), nullable=True),
    sa.Column('prices', sa.String(), nullable=True),
    sa.Column('link_keys', sa.String(), nullable=True),
    sa.Column('images', sa.Text(), nullable=True),
    sa.Column('media_pending', sa.Boolean(), nullable=False),
    sa.Column('rule', sa.String(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('matched_item_id', sa.Integer(), nullable=True),
    _when('linked_at', nullable=False),
    sa.PrimaryKeyConstraint('item_id')
    )
    op.create_index('ix_record_origins_record_id', 'record_origins', ['record_id'])
    # Partial indexes: most origins have no URL key (see hub.identity.features) and few wait
    # for their images, so neither costs anything on their insert.
    op.create_index('ix_record_origins_url_key', 'record_origins', ['url_key'],
                    sqlite_where=sa.text('url_key IS NOT NULL'), postgresql_where=sa.text('url_key IS NOT NULL'))
    op.create_index('ix_record_origins_merchant_at', 'record_origins', ['merchant_id', 'at'])
    op.create_index('ix_record_origins_media_pending', 'record_origins', ['media_pending'],
                    sqlite_where=sa.text('media_pending = 1'), postgresql_where=sa.text('media_pending'))

    op.create_table('identity_keys',
    sa.Column('key', sa.BigInteger(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('key', 'item_id')
    )
    op.create_index('ix_identity_keys_item_id', 'identity_keys', ['item_id'])

    op.create_table('identity_splits',
    sa.Column('item_a', sa.Integer(), nullable=False),
    sa.Column('item_b', sa.Integer(), nullable=False),
    _when('at', nullable=False),
    sa.PrimaryKeyConstraint('item_a', 'item_b')
    )

    op.create_table('record_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=False),
    _when('at', nullable=False),
    sa.Column('change', sa.String(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=True),
    sa.Column('actor', sa.String(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_record_revisions_record_id', 'record_revisions', ['record_id'])

    op.create_table('media',
    sa.Column('url_key', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('sha256', sa.String(), nullable=True),
    sa.Column('width', sa.Integer(), nullable=True),
    sa.Column('height', sa.Integer(), nullable=True),
    sa.Column('mime', sa.String(), nullable=True),
    sa.Column('status', sa.String(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    _when('fetched_at', nullable=False),
    sa.PrimaryKeyConstraint('url_key')
    )
    op.create_index('ix_media_sha256', 'media', ['sha256'])


def downgrade() -> None:
    op.drop_index('ix_media_sha256', table_name='media')
    op.drop_table('media')
    op.drop_index('ix_record_revisions_record_id', table_name='record_revisions')
    op.drop_table('record_revisions')
    op.drop_table('identity_splits')
    op.drop_index('ix_identity_keys_item_id', table_name='identity_keys')
    op.drop_table('identity_keys')
    for name in ('media_pending', 'merchant_at', 'url_key', 'record_id'):
        op.drop_index(f'ix_record_origins_{name}', table_name='record_origins')
    op.drop_table('record_origins')
    op.drop_index('ix_records_listing', table_name='records')
    op.drop_table('records')
