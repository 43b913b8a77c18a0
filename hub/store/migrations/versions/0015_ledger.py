"""the delivery ledger of push channels (issue 16): `ledger_channels` (each channel's rules,
state and pace), `ledger` (one row per channel, record and version, written with the record's
change) and `ledger_copies` (what each channel holds of a record: its id there); see
hub/store/ledger.py.

What the old per-item ledger (`deliveries`, kept as it is) says was sent becomes a sent row
and a copy of its record, so an upgraded hub sends no record again, and edits and removals of
those records reach the channels too (as far as a channel can act without its own id for the
copy: a webhook or a JSON Lines file can).

A branch of its own beside 0013/0014 (the store upgrades to "heads"); after 0002 (`deliveries`).

Revision ID: 0015
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa

revision = '0015'
down_revision = '0011'
branch_labels = None
depends_on = '0002'  # the old ledger (`deliveries`), read below, is on a branch of its own


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('ledger_channels',
                    sa.Column('id', sa.String(), nullable=False),
                    sa.Column('renderer', sa.String(), nullable=False),
                    sa.Column('rules', sa.Text(), nullable=False),
                    sa.Column('fingerprint', sa.String(), nullable=True),
                    sa.Column('state', sa.String(), nullable=False),
                    sa.Column('state_reason', sa.Text(), nullable=True),
                    _at('state_at'), _at('created_at', False), _at('hold_until'), _at('next_slot_at'),
                    _at('last_sent_at'),
                    sa.Column('last_error', sa.Text(), nullable=True),
                    _at('last_error_at'),
                    sa.PrimaryKeyConstraint('id'))
    op.create_table('ledger',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('channel_id', sa.String(), nullable=False),
                    sa.Column('record_id', sa.BigInteger(), nullable=False),
                    sa.Column('version', sa.BigInteger(), nullable=False),
                    sa.Column('op', sa.String(), nullable=False),
                    sa.Column('status', sa.String(), nullable=False),
                    _at('created_at', False),
                    sa.Column('attempts', sa.Integer(), nullable=False),
                    _at('next_try_at'), _at('first_try_at'), _at('last_try_at'), _at('doubt_since'),
                    sa.Column('lease_owner', sa.String(), nullable=True),
                    _at('lease_until'),
                    sa.Column('event', sa.String(), nullable=True),
                    sa.Column('remote_id', sa.String(), nullable=True),
                    _at('sent_at'),
                    sa.Column('detail', sa.Text(), nullable=True),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('channel_id', 'record_id', 'version', name='uq_ledger_delivery'))
    op.create_index('ix_ledger_work', 'ledger', ['channel_id', 'status', 'id'])
    op.create_table('ledger_copies',
                    sa.Column('channel_id', sa.String(), nullable=False),
                    sa.Column('record_id', sa.BigInteger(), autoincrement=False, nullable=False),
                    sa.Column('remote_id', sa.String(), nullable=True),
                    sa.Column('remote_url', sa.Text(), nullable=True),
                    sa.Column('state', sa.Text(), nullable=False),
                    sa.Column('content_hash', sa.String(), nullable=True),
                    sa.Column('version', sa.BigInteger(), nullable=False),
                    _at('at', False),
                    sa.PrimaryKeyConstraint('channel_id', 'record_id'))
    op.execute("""
        INSERT INTO ledger (channel_id, record_id, version, op, status, attempts, created_at, event, sent_at, detail)
        SELECT d.channel_id, o.record_id,
               COALESCE((SELECT max(r.id) FROM record_revisions r WHERE r.record_id = o.record_id), 0),
               'publish', 'sent', max(d.attempts), min(d.created_at), 'created', max(d.sent_at),
               'sent before the ledger kept versions (migration 0015)'
        FROM deliveries d JOIN record_origins o ON o.item_id = d.item_id
        WHERE d.status = 'sent'
        GROUP BY d.channel_id, o.record_id""")
    op.execute("""
        INSERT INTO ledger_copies (channel_id, record_id, remote_id, remote_url, state, content_hash, version, at)
        SELECT channel_id, record_id, NULL, NULL, '{}', NULL, version, COALESCE(sent_at, created_at)
        FROM ledger WHERE status = 'sent'""")


def downgrade() -> None:
    op.drop_table('ledger_copies')
    op.drop_index('ix_ledger_work', table_name='ledger')
    op.drop_table('ledger')
    op.drop_table('ledger_channels')
