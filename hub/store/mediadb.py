"""The media store's bookkeeping: which image URL was stored under which content hash, and
which origins still wait for their images. The files themselves live on disk (hub.media)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.dialects import postgresql, sqlite

from hub.identity import key_of
from hub.store.tables import MediaRow, RecordOriginRow

MEDIA = MediaRow.__table__
ORIGINS = RecordOriginRow.__table__


@dataclass(frozen=True)
class StoredImage:
    url: str
    sha256: str | None  # None: the download failed (see `error`)
    width: int | None
    height: int | None
    mime: str | None
    error: str | None = None
    unreachable: bool = False  # the download failed because the host could not be reached (or said 429/503)


class MediaIndex:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lookup(self, urls: Iterable[str], conn: Connection | None = None) -> dict[str, StoredImage]:
        """What is known about each URL (downloaded or failed); unknown URLs are left out.
        `conn`: a connection the caller holds (a second one per reader could exhaust the
        pool: every reader holding one and waiting for another)."""
        keys = {key_of(u): u for u in urls}
        if not keys:
            return {}
        if conn is None:
            with self.engine.connect() as conn:
                rows = conn.execute(select(MEDIA).where(MEDIA.c.url_key.in_(keys))).all()
        else:
            rows = conn.execute(select(MEDIA).where(MEDIA.c.url_key.in_(keys))).all()
        return {r.url: StoredImage(r.url, r.sha256, r.width, r.height, r.mime, r.error, r.status == "unreachable")
                for r in rows}

    def save(self, images: Sequence[StoredImage], at: datetime, done: Sequence[int] = ()) -> None:
        """Record what became of `images` and mark the origins `done` waiting, in one
        transaction (a commit per image made a run over thousands of images crawl)."""
        rows = [{"url_key": key_of(i.url), "url": i.url, "sha256": i.sha256, "width": i.width, "height": i.height,
                 "mime": i.mime, "status": "ok" if i.sha256 else "unreachable" if i.unreachable else "failed",
                 "error": i.error, "fetched_at": at}
                for i in images]
        insert = (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(MEDIA)
        changed = [c.name for c in MEDIA.columns if c.name != "url_key"]
        # two processes may store one URL at once: last one wins
        upsert = insert.on_conflict_do_update(index_elements=["url_key"], set_={c: insert.excluded[c] for c in changed})
        with self.engine.begin() as conn:
            if rows:
                conn.execute(upsert, rows)
            if done:
                conn.execute(update(ORIGINS).where(ORIGINS.c.item_id.in_(list(done))).values(media_pending=False))

    def unreachable_hosts(self, since: datetime) -> dict[str, tuple[datetime, str]]:
        """Hosts a download could not reach since `since`: host -> (when, why) of the latest
        such try. Only the image that was tried is marked, not the ones of the same host
        given up on with it, so the rows are few; finding them scans the table (status has
        no index), once per run that has images to fetch."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(MEDIA.c.url, MEDIA.c.error, MEDIA.c.fetched_at)
                                .where(MEDIA.c.status == "unreachable", MEDIA.c.fetched_at >= since)).all()
        found: dict[str, tuple[datetime, str]] = {}
        for r in sorted(rows, key=lambda r: r.fetched_at):
            if host := urlsplit(r.url).hostname:
                found[host] = (r.fetched_at, r.error or "")
        return found

    def pending(self, limit: int) -> list[tuple[int, list[str]]]:
        """(item id, image URLs) of live origins whose images were not fetched yet."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(ORIGINS.c.item_id, ORIGINS.c.images)
                                .where(ORIGINS.c.media_pending, ORIGINS.c.live).limit(limit)).all()
        return [(r.item_id, json.loads(r.images or "[]")) for r in rows]

    def count_pending(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(ORIGINS)
                                .where(ORIGINS.c.media_pending, ORIGINS.c.live)).scalar_one()

    def used_urls(self) -> Iterator[str]:
        """Every image URL a live origin still uses (streamed: a maintenance pass)."""
        with self.engine.connect() as conn:
            rows = conn.execution_options(yield_per=2000).execute(
                select(ORIGINS.c.images).where(ORIGINS.c.live, ORIGINS.c.images.is_not(None)))
            for r in rows:
                yield from json.loads(r.images)

    def forget_except(self, used: set[int], before: datetime) -> set[str]:
        """Drop the rows of URLs no live origin uses (fetched before `before`, so a download
        in flight is never forgotten); returns the content hashes still in use afterwards."""
        with self.engine.begin() as conn:
            rows = conn.execute(select(MEDIA.c.url_key, MEDIA.c.sha256, MEDIA.c.fetched_at)).all()
            unused = [r.url_key for r in rows if r.url_key not in used and r.fetched_at < before]
            for chunk in range(0, len(unused), 500):
                conn.execute(MEDIA.delete().where(MEDIA.c.url_key.in_(unused[chunk:chunk + 500])))
            gone = set(unused)
        return {r.sha256 for r in rows if r.sha256 and r.url_key not in gone}
