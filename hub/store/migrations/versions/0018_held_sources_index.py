"""the held sources, indexed (issue 18): `ix_source_holds_held` on source_holds (source_id)
WHERE hold IS NOT NULL.

Every claim of a dispatch tick, every look for due sources and the dispatch figures leave
out the sources held back for a person (`source_id NOT IN (SELECT source_id FROM
source_holds WHERE hold IS NOT NULL)`). source_holds has a row per configured source, nearly
all not held, and without this index PostgreSQL read the whole table for each of them: a
claim in a town of 55,000 sources (40,000 due) took 20-34 ms, 5-6 ms with it (bench_scale.py
database). The index holds only the few held.

Revision ID: 0018
Revises: 0017
"""
from alembic import op
import sqlalchemy as sa

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_source_holds_held', 'source_holds', ['source_id'],
                    sqlite_where=sa.text('hold IS NOT NULL'), postgresql_where=sa.text('hold IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('ix_source_holds_held', table_name='source_holds')
