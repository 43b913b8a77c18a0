"""the project manager's cockpit (issue 17): admin sessions (a hash of the cookie, never the
cookie), the audit log, the statistics' daily counters, fetches per source and day (counted
by a trigger on `sources`, so every process that fetches is counted), and the project
manager's edits of a record (its title, its image)

A branch of its own beside 0011/0012 (the store upgrades to "heads").

Revision ID: 0013
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = '0013'
down_revision = '0010'
branch_labels = None
depends_on = None

# Every fetch outcome sets sources.last_fetch_at (hub.store._RECORD_SOURCE): one count per
# source and (UTC) day, failures apart. A trigger, not Python: ingest writes from worker
# processes, `hub fetch` and `hub run` alike, and the count commits with the outcome.
_SQLITE_TRIGGER = """
CREATE TRIGGER sources_count_fetch AFTER UPDATE OF last_fetch_at ON sources
WHEN NEW.last_fetch_at IS NOT NULL
BEGIN
    INSERT INTO source_fetch_days (day, source_id, fetches, failures)
    VALUES (substr(NEW.last_fetch_at, 1, 10), NEW.id, 1, NEW.status = 'failing')
    ON CONFLICT (day, source_id) DO UPDATE SET fetches = fetches + 1, failures = failures + excluded.failures;
END
"""
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION hub_count_fetch() RETURNS trigger AS $$
BEGIN
    INSERT INTO source_fetch_days (day, source_id, fetches, failures)
    VALUES (to_char(NEW.last_fetch_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), NEW.id, 1,
            CASE WHEN NEW.status = 'failing' THEN 1 ELSE 0 END)
    ON CONFLICT (day, source_id) DO UPDATE
        SET fetches = source_fetch_days.fetches + 1, failures = source_fetch_days.failures + EXCLUDED.failures;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""
_PG_TRIGGER = """
CREATE TRIGGER sources_count_fetch AFTER UPDATE OF last_fetch_at ON sources
FOR EACH ROW WHEN (NEW.last_fetch_at IS NOT NULL) EXECUTE FUNCTION hub_count_fetch()
"""


def upgrade() -> None:
    op.create_table('admin_sessions',
                    sa.Column('id_hash', sa.String(), nullable=False),
                    sa.Column('user_name', sa.String(), nullable=False),
                    sa.Column('role', sa.String(), nullable=False),
                    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('id_hash'))
    op.create_index('ix_admin_sessions_expires_at', 'admin_sessions', ['expires_at'])
    op.create_table('admin_audit',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
                    sa.Column('user_name', sa.String(), nullable=False),
                    sa.Column('action', sa.String(), nullable=False),
                    sa.Column('target', sa.String(), nullable=True),
                    sa.Column('detail', sa.Text(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_admin_audit_at', 'admin_audit', ['at'])
    op.create_index('ix_admin_audit_target', 'admin_audit', ['action', 'target'])
    op.create_table('stat_counts',
                    sa.Column('day', sa.String(), nullable=False),
                    sa.Column('event', sa.String(), nullable=False),
                    sa.Column('merchant_id', sa.String(), nullable=False),
                    sa.Column('channel', sa.String(), nullable=False),
                    sa.Column('subject', sa.String(), nullable=False),
                    sa.Column('n', sa.BigInteger(), nullable=False),
                    sa.PrimaryKeyConstraint('day', 'event', 'merchant_id', 'channel', 'subject'))
    op.create_table('source_fetch_days',
                    sa.Column('day', sa.String(), nullable=False),
                    sa.Column('source_id', sa.String(), nullable=False),
                    sa.Column('fetches', sa.Integer(), nullable=False),
                    sa.Column('failures', sa.Integer(), nullable=False),
                    sa.PrimaryKeyConstraint('day', 'source_id'))
    op.create_table('record_edits',
                    sa.Column('record_id', sa.Integer(), autoincrement=False, nullable=False),
                    sa.Column('title', sa.Text(), nullable=True),
                    sa.Column('image', sa.Text(), nullable=True),
                    sa.Column('by', sa.String(), nullable=False),
                    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint('record_id'))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS sources_count_fetch" +
               (" ON sources" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS hub_count_fetch()")
    for table in ('record_edits', 'source_fetch_days', 'stat_counts', 'admin_audit', 'admin_sessions'):
        op.drop_table(table)
