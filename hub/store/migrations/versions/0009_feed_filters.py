"""feeds out and filtered pages (issue 14): item tags in a table of their own, folded, looked
up by tag (the pages' and feeds' `?tag=` filter); indexes for a merchant's records (merchant,
category and district filters) and the calendar's events by start. Existing items' tags are
copied over.

Revision ID: 0009
Revises: 0008
"""
import json

from alembic import op
import sqlalchemy as sa

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None

BATCH = 5000


def upgrade() -> None:
    op.create_table('item_tags',
                    sa.Column('item_id', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('tag', sa.String(), nullable=False),
                    sa.PrimaryKeyConstraint('item_id', 'tag'), sqlite_with_rowid=False)
    op.create_index('ix_item_tags_tag', 'item_tags', ['tag', 'item_id'])
    op.create_index('ix_record_origins_merchant', 'record_origins', ['merchant_id', 'record_id'])
    op.create_index('ix_records_events', 'records', ['kind', 'event_start'])
    _copy_tags()


def _copy_tags() -> None:
    conn = op.get_bind()
    items, tags = sa.table('items', sa.column('id'), sa.column('tags')), sa.table('item_tags', sa.column('item_id'),
                                                                                  sa.column('tag'))
    last = 0
    while True:
        rows = conn.execute(sa.select(items.c.id, items.c.tags).where(items.c.id > last, items.c.tags != '[]')
                            .order_by(items.c.id).limit(BATCH)).all()
        if not rows:
            return
        last = rows[-1].id
        pairs = {(r.id, key) for r in rows for key in map(_tag_key, json.loads(r.tags or '[]')) if key}
        if pairs:
            conn.execute(tags.insert(), [{'item_id': i, 'tag': t} for i, t in sorted(pairs)])


def _tag_key(tag: str) -> str:
    """As hub.records.tag_key was when this migration was written (migrations do not change)."""
    return ' '.join(str(tag).strip().lstrip('#').split()).casefold()


def downgrade() -> None:
    op.drop_index('ix_records_events', table_name='records')
    op.drop_index('ix_record_origins_merchant', table_name='record_origins')
    op.drop_index('ix_item_tags_tag', table_name='item_tags')
    op.drop_table('item_tags')
