"""dispatch at scale (issue 18): each source's host, and per-host politeness in the database

- `sources.host`: the host a source's URL talks to (NULL for sources without one, e.g.
  Facebook via the Graph API, which are not host-limited). Written by
  `hub.store.dispatch.DispatchStore.sync_hosts` from the config.
- `dispatch_hosts`: one row per host with `next_allowed_at`, the earliest time another batch
  of its sources may start. A claim locks the row (PostgreSQL: FOR UPDATE SKIP LOCKED), so two
  dispatchers ticking at once never both start one host.
- Indexes for the claim: due sources by host, and the leases in flight by host (the claim
  starts no second batch for a host while one is in flight).

Merges the heads before it (the store upgrades to "heads" either way), except 0002 (leases),
which it depends on: alembic cannot merge a revision that another merged one depends on.

Revision ID: 0016
Revises: 0013, 0014, 0015
"""
from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = ('0013', '0014', '0015')
branch_labels = None
depends_on = '0002'  # the leases the claim reads


def upgrade() -> None:
    op.add_column('sources', sa.Column('host', sa.String(), nullable=True))
    op.create_index('ix_sources_host_due', 'sources', ['host', 'next_fetch_at'])
    op.create_index('ix_sources_host_lease', 'sources', ['host', 'lease_until'])
    op.create_table('dispatch_hosts',
                    sa.Column('host', sa.String(), nullable=False),
                    sa.Column('next_allowed_at', sa.DateTime(timezone=True), nullable=True),
                    sa.Column('last_claim_at', sa.DateTime(timezone=True), nullable=True),
                    sa.PrimaryKeyConstraint('host'))


def downgrade() -> None:
    op.drop_table('dispatch_hosts')
    op.drop_index('ix_sources_host_lease', table_name='sources')
    op.drop_index('ix_sources_host_due', table_name='sources')
    with op.batch_alter_table('sources') as batch:
        batch.drop_column('host')
