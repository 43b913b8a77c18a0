"""the newsletter (issue 15): subscribers with their consent record, editions (one per
channel and schedule slot), the per-recipient ledger (unique on edition and subscriber) and
the key the links in mails are signed with (hub/newsletter/tables.py)

A branch of its own beside 0011/0012/0013 (the store upgrades to "heads").

Revision ID: 0014
Revises: 0010
"""
from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0010'
branch_labels = None
depends_on = None


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table('newsletter_subscribers',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('channel_id', sa.String(), nullable=False),
                    sa.Column('email', sa.String(), nullable=False),
                    sa.Column('email_key', sa.String(), nullable=False),
                    sa.Column('status', sa.String(), nullable=False),
                    sa.Column('categories', sa.Text(), nullable=False),
                    sa.Column('kinds', sa.Text(), nullable=False),
                    sa.Column('merchants', sa.Text(), nullable=False),
                    sa.Column('nonce', sa.String(), nullable=False),
                    sa.Column('form_version', sa.String(), nullable=False),
                    _at('created_at', False), _at('confirm_sent_at'), _at('confirmed_at'),
                    sa.Column('bounces', sa.Integer(), nullable=False),
                    _at('disabled_at'), _at('updated_at', False),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('channel_id', 'email_key', name='uq_newsletter_subscribers_address'),
                    sqlite_autoincrement=True)
    op.create_index('ix_newsletter_subscribers_status', 'newsletter_subscribers', ['status', 'created_at'])
    op.create_index('ix_newsletter_subscribers_email', 'newsletter_subscribers', ['email_key'])
    op.create_table('newsletter_editions',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('channel_id', sa.String(), nullable=False),
                    _at('slot', False), _at('created_at', False), _at('since', False),
                    sa.Column('subject', sa.String(), nullable=False),
                    sa.Column('content', sa.Text(), nullable=False),
                    sa.Column('status', sa.String(), nullable=False),
                    sa.Column('lease_owner', sa.String(), nullable=True),
                    _at('lease_until'), _at('next_try_at'),
                    sa.Column('failures', sa.Integer(), nullable=False),
                    sa.Column('last_error', sa.Text(), nullable=True),
                    sa.Column('recipients', sa.Integer(), nullable=False),
                    _at('finished_at'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('channel_id', 'slot', name='uq_newsletter_editions_slot'))
    op.create_index('ix_newsletter_editions_status', 'newsletter_editions', ['status'])
    op.create_table('newsletter_deliveries',
                    sa.Column('id', sa.Integer(), nullable=False),
                    sa.Column('edition_id', sa.Integer(), nullable=False),
                    sa.Column('subscriber_id', sa.Integer(), nullable=False),
                    sa.Column('status', sa.String(), nullable=False),
                    sa.Column('attempts', sa.Integer(), nullable=False),
                    _at('next_try_at'),
                    sa.Column('detail', sa.Text(), nullable=True),
                    _at('sent_at'),
                    sa.PrimaryKeyConstraint('id'),
                    sa.UniqueConstraint('edition_id', 'subscriber_id', name='uq_newsletter_deliveries_recipient'))
    op.create_index('ix_newsletter_deliveries_work', 'newsletter_deliveries', ['edition_id', 'status', 'id'])
    op.create_index('ix_newsletter_deliveries_subscriber', 'newsletter_deliveries', ['subscriber_id'])
    op.create_table('newsletter_keys',
                    sa.Column('id', sa.String(), nullable=False),
                    sa.Column('secret', sa.String(), nullable=False),
                    sa.PrimaryKeyConstraint('id'))


def downgrade() -> None:
    op.drop_table('newsletter_keys')
    op.drop_table('newsletter_deliveries')
    op.drop_table('newsletter_editions')
    op.drop_table('newsletter_subscribers')
