"""full-text search and fast listings (issue 14): the records' search index, filled for the
records there are, and the index a merchant's daily quota is counted by.

SQLite: an FTS5 table `record_search(title, body, merchant)`, rowid = record id, holding
stemmed text (hub.search.stem_text). PostgreSQL: `record_search(record_id, document)` with a
GIN index over the tsvector (`german` configuration). The rows are written the way the store
writes them afterwards (hub.store.searchindex.fill), so the index and the queries agree.

`ix_records_quota` (merchant_id, sort_day, sort_at, and what decides visibility): a listing
with quotas asks, for each record it shows, how many of the merchant's records of that day
came before it (hub.store.records._within_quota), instead of ranking the whole table per
request. `ix_records_shown` (status, removed_at, expires_at, and what a quota needs): counts
of what residents see read from the index alone, and the next moment one of them expires
(hub.store.counts).

Revision ID: 0011
Revises: 0010
"""
from alembic import op
from sqlalchemy.exc import OperationalError

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    from hub.store import searchindex  # the store's own writer: the index must match its queries

    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        try:
            op.execute("CREATE VIRTUAL TABLE record_search USING fts5(title, body, merchant)")
        except OperationalError as exc:
            if "fts5" not in str(exc):
                raise
            raise RuntimeError(f"this SQLite ({conn.exec_driver_sql('SELECT sqlite_version()').scalar()}) has no "
                               "FTS5, which search needs: run the hub with a Python whose SQLite has it (Debian's "
                               "and python.org's do), or use PostgreSQL") from exc
    else:
        op.execute("CREATE TABLE record_search (record_id BIGINT PRIMARY KEY, document tsvector NOT NULL)")
        op.execute("CREATE INDEX ix_record_search_document ON record_search USING gin (document)")
    op.create_index('ix_records_quota', 'records',
                    ['merchant_id', 'sort_day', 'sort_at', 'status', 'removed_at', 'expires_at'])
    op.create_index('ix_records_shown', 'records',
                    ['status', 'removed_at', 'expires_at', 'merchant_id', 'sort_day', 'sort_at'])
    if conn.dialect.name == "sqlite":
        # Without statistics SQLite takes (status, removed_at) of ix_records_shown for a narrow
        # range, and counts a merchant's records by reading everything residents see (200 ms
        # at a million records, against 13 ms by the merchant's record ids).
        op.execute("ANALYZE records")
    searchindex.fill(conn)


def downgrade() -> None:
    op.drop_index('ix_records_shown', table_name='records')
    op.drop_index('ix_records_quota', table_name='records')
    op.execute("DROP TABLE record_search")
