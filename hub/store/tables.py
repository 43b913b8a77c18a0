"""Table classes of the store. Never imported outside `hub/store/`: the rest of the hub sees
`Item`s and small read models only.

Datetimes are stored as UTC. SQLite has no time zone type, so `UTCDateTime` strips the
zone on the way in and puts UTC back on the way out; PostgreSQL gets `timestamptz`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import BigInteger, DateTime, Index, Text, TypeDecorator, UniqueConstraint, text
from sqlmodel import Column, Field, SQLModel


class UTCDateTime(TypeDecorator):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware datetimes")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _dt(**kw) -> Field:
    return Field(default=None, sa_column=Column(UTCDateTime(), **kw))


class SourceRow(SQLModel, table=True):
    __tablename__ = "sources"

    id: str = Field(primary_key=True)
    merchant_id: str = Field(index=True)
    connector: str
    # Opaque caching state handed back to the connector (FetchState).
    etag: Optional[str] = None
    last_modified: Optional[str] = None
    cursor: Optional[str] = None
    status: str = "new"  # new | ok | failing
    last_error: Optional[str] = Field(default=None, sa_column=Column(Text))
    last_error_code: Optional[str] = None
    warnings: Optional[str] = Field(default=None, sa_column=Column(Text))
    error_count: int = 0
    last_fetch_at: Optional[datetime] = _dt()
    last_ok_at: Optional[datetime] = _dt()
    last_new_at: Optional[datetime] = _dt()
    next_fetch_at: Optional[datetime] = _dt(index=True)
    fresh_until: Optional[datetime] = _dt()
    interval_seconds: Optional[int] = None
    interval_reason: Optional[str] = None
    # Scheduling (migration 0002): who fetches the source right now, and until when.
    lease_owner: Optional[str] = None
    lease_until: Optional[datetime] = _dt()
    # WebSub subscription: push_state is None | pending | live | denied | failed.
    push_state: Optional[str] = None
    push_hub: Optional[str] = None
    push_topic: Optional[str] = None
    push_secret: Optional[str] = None
    push_requested_at: Optional[datetime] = _dt()
    push_lease_until: Optional[datetime] = _dt()
    push_error: Optional[str] = Field(default=None, sa_column=Column(Text))


class ItemRow(SQLModel, table=True):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id", name="uq_items_source_external"),
        Index("ix_items_visible_sort", "deleted_at", "sort_at"),
        Index("ix_items_first_seen", "first_seen_at"),  # /metrics: the items first seen in the last 7 days
        # A merchant's items, newest last: also a merchant's last post in one look (the cockpit's quiet list)
        Index("ix_items_merchant_sort", "merchant_id", "sort_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    source_id: str  # indexed as the first column of uq_items_source_external
    external_id: str
    merchant_id: str  # indexed as the first column of ix_items_merchant_sort
    kind: str = "post"
    title: str = ""
    summary: str = Field(default="", sa_column=Column(Text, nullable=False))
    content_html: str = Field(default="", sa_column=Column(Text, nullable=False))
    content_text: str = Field(default="", sa_column=Column(Text, nullable=False))
    url: Optional[str] = None
    origin_url: Optional[str] = None
    media: str = Field(default="[]", sa_column=Column(Text, nullable=False))  # JSON list of Media
    tags: str = Field(default="[]", sa_column=Column(Text, nullable=False))   # JSON list of str
    language: Optional[str] = None
    published: Optional[datetime] = _dt()
    updated: Optional[datetime] = _dt()
    # What residents sort by: published, else when the hub first saw the item.
    sort_at: Optional[datetime] = _dt()
    event_start: Optional[datetime] = _dt()
    event_end: Optional[datetime] = _dt()
    event_timezone: Optional[str] = None
    event_all_day: bool = False
    event_location: Optional[str] = None
    event_cancelled: bool = False
    event_latitude: Optional[float] = None
    event_longitude: Optional[float] = None
    offer_price: Optional[str] = None
    offer_currency: Optional[str] = None
    offer_valid_from: Optional[datetime] = _dt()
    offer_valid_until: Optional[datetime] = _dt()
    content_hash: str
    first_seen_at: Optional[datetime] = _dt()
    changed_at: Optional[datetime] = _dt()
    # Tombstone: set when the merchant deleted the entry. The row stays, so the key is
    # remembered and a stale copy of the feed cannot bring the item back.
    deleted_at: Optional[datetime] = _dt()


class ChannelRow(SQLModel, table=True):
    """When a channel publishes next, and who is publishing it right now."""

    __tablename__ = "channels"

    id: str = Field(primary_key=True)
    schedule: Optional[str] = None  # the cron expression next_run_at was computed from
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    next_run_at: Optional[datetime] = _dt()
    lease_owner: Optional[str] = None
    lease_until: Optional[datetime] = _dt()
    last_run_at: Optional[datetime] = _dt()
    last_status: Optional[str] = None
    last_error: Optional[str] = Field(default=None, sa_column=Column(Text))


class DeliveryRow(SQLModel, table=True):
    """The delivery ledger: one row per item a channel published (or tried to). The unique
    key is what makes "never twice" hold, whoever runs the channel."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("channel_id", "item_id", name="uq_deliveries_channel_item"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    channel_id: str
    item_id: int = Field(index=True)
    status: str  # sending | sent | skipped | failed
    attempts: int = 0
    detail: Optional[str] = Field(default=None, sa_column=Column(Text))
    lease_until: Optional[datetime] = _dt()  # a "sending" row whose lease passed is retried
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    sent_at: Optional[datetime] = _dt()


# --- canonical records (issue 4, migration 0003) ----------------------------------------------

def _key(**kw) -> Field:
    return Field(default=None, sa_column=Column(BigInteger, **kw))


def _required_dt() -> Field:
    return Field(sa_column=Column(UTCDateTime(), nullable=False))


class RecordRow(SQLModel, table=True):
    """One real thing as residents see it, merged from one or more items (its origins).
    The displayed fields are merged from the origins when read (hub.records); the columns
    here are what listing, filtering and the revision diff need."""

    __tablename__ = "records"
    __table_args__ = (
        Index("ix_records_listing", "status", "removed_at", "sort_at"),
        Index("ix_records_events", "kind", "event_start"),  # the calendar feed (migration 0009)
        # Migration 0011. A merchant's records of a day in order, with what decides whether
        # residents see them: its daily quota, read from the index alone (hub.store.records).
        Index("ix_records_quota", "merchant_id", "sort_day", "sort_at", "status", "removed_at", "expires_at"),
        # What residents may see, with when it expires and what its quota needs: exact
        # counts read from the index alone, and the next expiry after a moment (hub.store.counts).
        Index("ix_records_shown", "status", "removed_at", "expires_at", "merchant_id", "sort_day", "sort_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str
    merchant_id: str  # the organiser: the merchant with the most origins
    status: str  # published | pending | hidden
    status_by: str  # hub | rule | manager: who decided the status
    status_reason: Optional[str] = None
    sort_at: Optional[datetime] = _dt()
    sort_day: Optional[str] = None  # local date of sort_at, for per-day quotas
    event_start: Optional[datetime] = _dt()
    expires_at: Optional[datetime] = _dt()
    snapshot: str = Field(sa_column=Column(Text, nullable=False))  # JSON of the small canonical fields
    created_at: datetime = _required_dt()
    changed_at: datetime = _required_dt()
    removed_at: Optional[datetime] = _dt()  # every origin is gone


# The records' full-text index (migration 0011) is no table class: an FTS5 virtual table on
# SQLite, a tsvector with a GIN index on PostgreSQL; hub.store.searchindex writes and asks it.


class RecordOriginRow(SQLModel, table=True):
    """An item as an origin of a record, with its identity fingerprint (hub.identity) and
    why it joined the record. Text features are NULL until needed (see hub.store.placement)."""

    __tablename__ = "record_origins"
    __table_args__ = (
        # Partial (migration 0006): origins without text features yet, by merchant and time, so
        # a merchant that gets a second source finds the posts of its first (hub.store.placement).
        Index("ix_record_origins_unkeyed", "merchant_id", "at", sqlite_where=text("title_key IS NULL"),
              postgresql_where=text("title_key IS NULL")),
        # Partial: most origins have no URL key and few wait for images (migration 0003).
        Index("ix_record_origins_url_key", "url_key", sqlite_where=text("url_key IS NOT NULL"),
              postgresql_where=text("url_key IS NOT NULL")),
        Index("ix_record_origins_media_pending", "media_pending", sqlite_where=text("media_pending = 1"),
              postgresql_where=text("media_pending")),
        # The records of a merchant (pages and feeds filtered by merchant, category, district;
        # migration 0009).
        Index("ix_record_origins_merchant", "merchant_id", "record_id"),
    )

    item_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    record_id: int = Field(index=True)
    source_id: str
    merchant_id: str
    live: bool
    at: datetime = _required_dt()
    url_key: Optional[int] = _key()
    event_day: Optional[int] = Field(default=None, index=True)
    event_start: Optional[datetime] = _dt()
    event_all_day: bool = False
    event_detected: bool = False
    title_key: Optional[str] = None
    place_key: Optional[str] = None
    simhash: Optional[int] = _key()
    text_words: Optional[int] = None
    prices: Optional[str] = None
    link_keys: Optional[str] = None
    images: Optional[str] = Field(default=None, sa_column=Column(Text))  # JSON list of image URLs
    media_pending: bool = False
    rule: str
    score: float
    matched_item_id: Optional[int] = None
    linked_at: datetime = _required_dt()


class ItemTagRow(SQLModel, table=True):
    """An item's tags, folded (`hub.records.tag_key`), one row each (migration 0009): the tag
    filter of the pages and feeds looks records up by tag through their live origins, never
    reading every item's JSON list. Written with the item (hub.store.records)."""

    __tablename__ = "item_tags"
    # WITHOUT ROWID on SQLite: the key is the row, one B-tree fewer to write at ingest.
    __table_args__ = (Index("ix_item_tags_tag", "tag", "item_id"), {"sqlite_with_rowid": False})

    item_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    tag: str = Field(primary_key=True)


class IdentityKeyRow(SQLModel, table=True):
    """Blocking keys of origins (hub.identity.index_keys): the URLs it links to, for events
    each (day, title word), for posts of merchants with several sources their title, title
    words, opening words and a price, each per (merchant, 8-day bucket). Placing an item
    looks up its keys here: never a scan. A key holds at most `placement.KEY_CAP` items
    (`EVENT_KEY_CAP` for events); then it is common (`IdentityCommonKeyRow`)."""

    __tablename__ = "identity_keys"

    key: int = Field(sa_column=Column(BigInteger, primary_key=True))
    item_id: int = Field(primary_key=True, index=True, sa_column_kwargs={"autoincrement": False})


class IdentityCommonKeyRow(SQLModel, table=True):
    """Keys that too many items share to tell any of them apart ("angebot" among a busy
    shop's posts of a week, "konzert" on a Saturday): looked up no more, and stored no more
    (migration 0006). `day`: the day (ordinal) of the item that filled it, for retention."""

    __tablename__ = "identity_common_keys"

    key: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    day: int = Field(index=True)


class IdentitySplitRow(SQLModel, table=True):
    """A project manager's split: these two items must never be merged again (item_a < item_b)."""

    __tablename__ = "identity_splits"

    item_a: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    item_b: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = _required_dt()


class RecordRevisionRow(SQLModel, table=True):
    """What changed in a record, when and by whom; also the change feed renderers follow
    to withdraw removed records."""

    __tablename__ = "record_revisions"

    id: Optional[int] = Field(default=None, primary_key=True)
    record_id: int = Field(index=True)
    at: datetime = _required_dt()
    change: str
    item_id: Optional[int] = None
    actor: str  # hub | rule | manager
    detail: str = Field(sa_column=Column(Text, nullable=False))  # JSON


class MediaRow(SQLModel, table=True):
    """A downloaded image: the original URL and the content (sha256) it is stored under."""

    __tablename__ = "media"

    url_key: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    url: str = Field(sa_column=Column(Text, nullable=False))
    sha256: Optional[str] = Field(default=None, index=True)
    width: Optional[int] = None
    height: Optional[int] = None
    mime: Optional[str] = None
    status: str  # ok | failed
    error: Optional[str] = Field(default=None, sa_column=Column(Text))
    fetched_at: datetime = _required_dt()
