"""Two small tables of the store for sources that need a person, and for images read again.

`source_holds`: a row per configured source with the fingerprint of its options (a hash,
never the options themselves: they hold tokens), and `hold`, the error code of a failure
that no retry can fix (an invalid Graph API token). A held source is not fetched by the
scheduler until its options change: `Store.sync_sources` sees a new fingerprint and lets it
go. The hold survives restarts.

`media_refreshes`: image URLs whose download failed because the signed URL had expired, and
whose entry was read again once for a fresh URL (hub.refresh): at most once per URL.

They live apart from hub/store/tables.py so that this issue's schema stays in one place.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Optional, Sequence

from sqlalchemy import BigInteger, Engine, Index, Text, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Column, Field, SQLModel

from hub.identity import key_of
from hub.store.tables import ItemRow, MediaRow, UTCDateTime


class SourceHoldRow(SQLModel, table=True):
    __tablename__ = "source_holds"
    # Partial (migration 0018): the few held sources, which every claim and due look leaves out.
    __table_args__ = (Index("ix_source_holds_held", "source_id", sqlite_where=text("hold IS NOT NULL"),
                            postgresql_where=text("hold IS NOT NULL")),)

    source_id: str = Field(primary_key=True)
    fingerprint: Optional[str] = None  # hub.config.options_fingerprint of the configured options
    hold: Optional[str] = None  # the error code that holds the source back; None: not held
    held_at: Optional[datetime] = Field(default=None, sa_column=Column(UTCDateTime()))


class MediaRefreshRow(SQLModel, table=True):
    __tablename__ = "media_refreshes"

    url_key: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    source_id: str
    external_id: str
    refreshed_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    outcome: Optional[str] = Field(default=None, sa_column=Column(Text))


HOLDS = SourceHoldRow.__table__
REFRESHES = MediaRefreshRow.__table__
ITEMS = ItemRow.__table__
MEDIA = MediaRow.__table__


class Refreshes:
    """The store's side of re-reading entries whose image URL expired (hub.refresh)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def failed_signed_images(self, limit: int) -> list[tuple[str, str | None]]:
        """(url, error) of signed CDN images (an `oe=` expiry in the URL) whose download
        failed and that were not re-read yet. Failed rows are few: the scan is cheap."""
        query = (select(MEDIA.c.url, MEDIA.c.error)
                 .where(MEDIA.c.sha256.is_(None), MEDIA.c.url.contains("oe=", autoescape=True),
                        MEDIA.c.url_key.not_in(select(REFRESHES.c.url_key)))
                 .limit(limit))
        with self.engine.connect() as conn:
            return [(r.url, r.error) for r in conn.execute(query)]

    def entries_using(self, url: str, source_ids: Sequence[str]) -> list[tuple[str, str]]:
        """(source id, external id) of live items of these sources that show `url`."""
        if not source_ids:
            return []
        query = (select(ITEMS.c.source_id, ITEMS.c.external_id)
                 .where(ITEMS.c.source_id.in_(list(source_ids)), ITEMS.c.deleted_at.is_(None),
                        ITEMS.c.media.contains(json.dumps(url)[1:-1], autoescape=True)))
        with self.engine.connect() as conn:
            return [(r.source_id, r.external_id) for r in conn.execute(query)]

    def record(self, url: str, source_id: str, external_id: str, at: datetime, outcome: str) -> None:
        """Note that `url` was re-read (once is all it gets)."""
        row = {"url_key": key_of(url), "source_id": source_id, "external_id": external_id, "refreshed_at": at,
               "outcome": outcome}
        insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(REFRESHES)
        with self.engine.begin() as conn:
            conn.execute(insert.values(row).on_conflict_do_nothing(index_elements=["url_key"]))

    def outcomes(self) -> dict[int, str]:
        with self.engine.connect() as conn:
            return {r.url_key: r.outcome for r in conn.execute(select(REFRESHES.c.url_key, REFRESHES.c.outcome))}
