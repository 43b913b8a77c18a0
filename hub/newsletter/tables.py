"""The newsletter's tables (migration 0014). Only `hub.newsletter.store` reads and writes them;
the rest of the newsletter sees small read models.

- `newsletter_subscribers`: one row per (newsletter, address): its state, topic preferences
  and the consent record (when the form was sent, when the address confirmed, which wording
  of the form it agreed to; never an IP address or user agent).
- `newsletter_editions`: one per channel and schedule slot (unique), with the records it
  carries, frozen when it was created, and the lease of the process sending it.
- `newsletter_deliveries`: the per-recipient ledger, unique on (edition, subscriber).
- `newsletter_keys`: the secret the links in mails are signed with (one per installation,
  in the database so that every process and host verifies the same links).
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

from hub.store.tables import UTCDateTime

metadata = MetaData()

SUBSCRIBERS = Table(
    "newsletter_subscribers", metadata,
    Column("id", Integer, primary_key=True),
    Column("channel_id", String, nullable=False),
    Column("email", String, nullable=False),  # as typed (trimmed)
    Column("email_key", String, nullable=False),  # case-folded: what "the same address" means
    Column("status", String, nullable=False),  # pending | confirmed | disabled
    Column("categories", Text, nullable=False),  # JSON lists; empty: all
    Column("kinds", Text, nullable=False),
    Column("merchants", Text, nullable=False),
    Column("nonce", String, nullable=False),  # part of every link: a new row never honours an old link
    Column("form_version", String, nullable=False),  # the consent wording the form showed
    Column("created_at", UTCDateTime(), nullable=False),  # the form was sent
    Column("confirm_sent_at", UTCDateTime()),
    Column("confirmed_at", UTCDateTime()),  # consent: the confirmation link was followed
    Column("bounces", Integer, nullable=False),  # permanent rejections in a row
    Column("disabled_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("channel_id", "email_key", name="uq_newsletter_subscribers_address"),
    Index("ix_newsletter_subscribers_status", "status", "created_at"),
    Index("ix_newsletter_subscribers_email", "email_key"),
    sqlite_autoincrement=True,  # an erased subscriber's id is never given to someone else
)

EDITIONS = Table(
    "newsletter_editions", metadata,
    Column("id", Integer, primary_key=True),
    Column("channel_id", String, nullable=False),
    Column("slot", UTCDateTime(), nullable=False),  # the schedule's time (or the minute of `hub publish`)
    Column("created_at", UTCDateTime(), nullable=False),
    Column("since", UTCDateTime(), nullable=False),  # records new after this are new in it
    Column("subject", String, nullable=False),
    Column("content", Text, nullable=False),  # JSON {"new": [record ids], "upcoming": [...]}
    Column("status", String, nullable=False),  # sending | sent
    Column("lease_owner", String),
    Column("lease_until", UTCDateTime()),
    Column("next_try_at", UTCDateTime()),  # after the SMTP server could not be reached
    Column("failures", Integer, nullable=False),  # connection failures in a row
    Column("last_error", Text),
    Column("recipients", Integer, nullable=False),
    Column("finished_at", UTCDateTime()),
    UniqueConstraint("channel_id", "slot", name="uq_newsletter_editions_slot"),
    Index("ix_newsletter_editions_status", "status"),
)

DELIVERIES = Table(
    "newsletter_deliveries", metadata,
    Column("id", Integer, primary_key=True),
    Column("edition_id", Integer, nullable=False),
    Column("subscriber_id", Integer, nullable=False),
    Column("status", String, nullable=False),  # pending | sending | sent | skipped | deferred | failed
    Column("attempts", Integer, nullable=False),
    Column("next_try_at", UTCDateTime()),  # a deferred (4xx) one is tried again then
    Column("detail", Text),
    Column("sent_at", UTCDateTime()),
    UniqueConstraint("edition_id", "subscriber_id", name="uq_newsletter_deliveries_recipient"),
    Index("ix_newsletter_deliveries_work", "edition_id", "status", "id"),
    Index("ix_newsletter_deliveries_subscriber", "subscriber_id"),
)

KEYS = Table(
    "newsletter_keys", metadata,
    Column("id", String, primary_key=True),
    Column("secret", String, nullable=False),
)
