"""Reading single entries of a source again, by their ids.

Some connectors (Facebook, Instagram) can read one entry by its id (`retrieve_entries(opts,
external_ids, fetcher) -> Retrieved`, an optional connector method). Two things use it:

- `fetch_entries`: a push that only names what changed (a Facebook webhook says "post X was
  edited") becomes a read of those entries, stored through the normal pipeline as a push:
  partial (nothing else is judged deleted), and an entry the source no longer has is
  tombstoned (`Parsed.gone`).
- `refresh_expired_images`: Facebook's and Instagram's image URLs expire within days (`oe=`).
  The media store downloads images at ingest; when a download failed because its URL had
  expired (the hub was down, the host unreachable for a while, an image first needed on a
  page days later), the entry is read again once for a fresh URL of the same image, which is
  downloaded and stored under the URL the entry keeps. Residents never load the CDN's URLs:
  pages only show images the hub stored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

from hub import plugins
from hub.config import Settings
from hub.errors import TokenInvalid
from hub.http import Fetcher
from hub.ingest import connector_failed, parse_payload
from hub.media import MediaStore
from hub.models import SourceRef, stable_media_url
from hub.pipeline import Pipeline, SourceReport
from hub.store import Store, utcnow
from hub.store.holds import Refreshes

log = logging.getLogger("hub.refresh")
REFRESH_BATCH = 50  # expired images looked at per pass


def can_read_entries(connector: str) -> bool:
    """Whether a connector reads single entries by id (`retrieve_entries`)."""
    return callable(getattr(plugins.connector(connector), "retrieve_entries", None))


async def fetch_entries(pipeline: Pipeline, wanted: Mapping[str, Sequence[str]]) -> list[SourceReport]:
    """Read these entries (source id -> external ids) again and store them through the
    pipeline, as a push. A source held back for a person (an invalid token) is not asked;
    a failure is recorded on the source like a failed fetch (a 190 holds it back).

    Raises:
        KeyError: a source id that is not configured.
        ValueError: the source's connector cannot read single entries.
    """
    sources = {s.id: (m, s) for m, s in pipeline.settings.sources()}
    chosen = {sid: sources[sid] for sid in wanted}
    for sid, (_, source) in chosen.items():
        if not can_read_entries(source.connector):
            raise ValueError(f"source {sid}: the {source.connector} connector cannot read single entries")
    states = await asyncio.to_thread(pipeline.store.fetch_states, list(chosen))
    pushed, failures = {}, []
    for sid, (_, source) in chosen.items():
        state = states.get(sid)
        connector = plugins.connector(source.connector)()
        try:
            if state is not None and state.hold:
                raise TokenInvalid(state.hold)  # held back for a person: Meta is not asked
            pushed[sid] = await connector.retrieve_entries(source.options, list(wanted[sid]), pipeline.fetcher)
        except Exception as exc:
            failures.append(connector_failed(sid, source.connector, utcnow(), exc))
    if failures:
        await asyncio.to_thread(pipeline.store.apply, failures)
    reports = [SourceReport(f.source_id, chosen[f.source_id][0].id, "failed", error=f.error) for f in failures]
    if pushed:
        reports += await pipeline.run([chosen[sid] for sid in pushed], pushed=pushed)
    return reports


@dataclass
class RefreshReport:
    looked_at: int = 0
    stored: int = 0  # images stored from a fresh URL
    outcomes: dict[str, str] = field(default_factory=dict)  # expired URL -> what became of it


async def refresh_expired_images(settings: Settings, store: Store, media: MediaStore, fetcher: Fetcher,
                                 now: datetime | None = None, limit: int = REFRESH_BATCH) -> RefreshReport:
    """Re-read, once, the entries whose image download failed because the signed URL had
    expired, and store the image from the fresh URL under the old one (see the module's
    docstring). A task function for `hub run`'s media job and `hub fetch`."""
    now = now or datetime.now(UTC)
    report = RefreshReport()
    refreshes = Refreshes(store.engine)
    failed = await asyncio.to_thread(refreshes.failed_signed_images, limit)
    expired = [url for url, error in failed if _expired(url, error, now)]
    if not expired:
        return report
    sources = {s.id: (m, s) for m, s in settings.sources() if can_read_entries(s.connector)}
    wanted: dict[str, dict[str, list[str]]] = {}  # source -> entry -> expired URLs
    for url in expired:
        users = await asyncio.to_thread(refreshes.entries_using, url, list(sources))
        if not users:
            await asyncio.to_thread(refreshes.record, url, "", "", now, "no live entry shows this image any more")
            continue
        for sid, external_id in users[:1]:  # one entry is enough to learn a fresh URL
            wanted.setdefault(sid, {}).setdefault(external_id, []).append(url)
    for sid, entries in wanted.items():
        merchant, source = sources[sid]
        outcomes = await _refresh_source(settings, media, fetcher, merchant.id, source, entries)
        for external_id, urls in entries.items():
            for url in urls:
                outcome = outcomes.get(url, "the entry was not read again")
                report.outcomes[url] = outcome
                report.stored += outcome.startswith("stored")
                await asyncio.to_thread(refreshes.record, url, sid, external_id, now, outcome)
    report.looked_at = len(expired)
    if report.outcomes:
        log.info("expired image URLs: %d re-read, %d stored from a fresh URL", len(report.outcomes), report.stored)
    return report


async def _refresh_source(settings: Settings, media: MediaStore, fetcher: Fetcher, merchant_id: str, source,
                          entries: dict[str, list[str]]) -> dict[str, str]:
    """URL -> outcome for the expired URLs of one source's entries."""
    connector = plugins.connector(source.connector)()
    try:
        got = await connector.retrieve_entries(source.options, list(entries), fetcher)
        ref = SourceRef(source.id, merchant_id, source.language, settings.platform.timezone)
        parsed = await asyncio.to_thread(parse_payload, source.connector, source.options, ref, got)
    except Exception as exc:  # the token may have expired too: the regular fetch will say so
        return {url: f"the entry could not be read again: {exc}" for urls in entries.values() for url in urls}
    items = {item.external_id: item for item in parsed.items}
    outcomes = {}
    for external_id, urls in entries.items():
        item = items.get(external_id)
        for url in urls:
            if item is None:
                outcomes[url] = "the entry is gone or hidden now"
                continue
            fresh = next((m.url for m in item.media if stable_media_url(m.url) == stable_media_url(url)), None)
            if fresh is None:
                outcomes[url] = "the entry no longer shows this image"
                continue
            image = await media.store(fresh)
            if image.sha256 is None:
                outcomes[url] = f"a fresh URL failed too: {image.error}"
                continue
            await asyncio.to_thread(media.index.save, [replace(image, url=url, error=None)], datetime.now(UTC))
            outcomes[url] = "stored from a fresh URL"
    return outcomes


def _expired(url: str, error: str | None, now: datetime) -> bool:
    """A signed CDN URL whose expiry (`oe`, hex Unix time) has passed, or that the CDN
    refused as expired."""
    expiry = dict(parse_qsl(urlsplit(url).query)).get("oe", "")
    try:
        if int(expiry, 16) <= now.timestamp():
            return True
    except ValueError:
        pass
    return bool(error) and ("expired" in error.lower() or "HTTP 403" in error)
