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

from datetime import datetime
from typing import Optional

from sqlalchemy import BigInteger, Text
from sqlmodel import Column, Field, SQLModel

from hub.store.tables import UTCDateTime


class SourceHoldRow(SQLModel, table=True):
    __tablename__ = "source_holds"

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
