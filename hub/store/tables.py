"""Table classes of the store. Never imported outside `hub/store/`: the rest of the hub sees
`Item`s and small read models only.

Datetimes are stored as UTC. SQLite has no time zone type, so `UTCDateTime` strips the
zone on the way in and puts UTC back on the way out; PostgreSQL gets `timestamptz`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from sqlalchemy import DateTime, Index, Text, TypeDecorator, UniqueConstraint
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


class ItemRow(SQLModel, table=True):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("source_id", "external_id", name="uq_items_source_external"),
        Index("ix_items_visible_sort", "deleted_at", "sort_at"),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    source_id: str = Field(index=True)
    external_id: str
    merchant_id: str = Field(index=True)
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
