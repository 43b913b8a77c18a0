"""The newsletter in `hub run` (a tick job), `hub publish` and the web preview.

Each newsletter channel with a `schedule:` has a row in the store's `channels` table whose
`next_run_at` is its next cron slot (hub.store.scheduling: leases, compare-and-set). When a
slot is due, one process claims the row and makes the slot's edition (unique per slot, so a
second try finds the first) if anything is new, then moves the row to the next slot. A slot
missed while no hub ran is made once, late; the slots between are not (each edition has
everything since the one before). While an older edition is still being sent, the next one
waits. Every tick then sends what editions have left (`EditionSender`): new ones, ones a
crashed process left, recipients whose server asked to try later.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from hub.config import ChannelConfig, Settings
from hub.cron import next_run
from hub.media import MediaStore
from hub.newsletter import digest, mime
from hub.newsletter.options import newsletter_channel, newsletter_channels
from hub.newsletter.render import EditionRenderer, Mail, category_title, image_urls
from hub.newsletter.sender import EditionSender, SendReport
from hub.newsletter.store import Edition, NewsletterStore, Preferences
from hub.store import Store
from hub.store.scheduling import ScheduleStore

log = logging.getLogger("hub.newsletter")
SAMPLE_ADDRESS = "beispiel@example.invalid"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Draft:
    """The next edition as it would be made now, rendered for one sample subscriber."""

    channel_id: str
    since: datetime
    new: int
    upcoming: int
    mail: Mail | None  # None: nothing new, or nothing for this subscriber
    sample: str  # whose topics the mail was made with


class NewsletterJob:
    def __init__(self, settings: Settings, store: Store, *, owner: str, now: Callable[[], datetime] = utcnow,
                 pictures=None) -> None:
        self.settings = settings
        self.store = store
        self.owner = owner
        self.now = now
        self.letters = NewsletterStore(store)
        self.plans = ScheduleStore(store)
        # Images are the hub's own copies (hub.media): absolute URLs of its media route.
        self.pictures = pictures or MediaStore(settings.data_dir, settings.base_dir, store.records.media).pictures
        self._stop = asyncio.Event()
        self._running = asyncio.Lock()
        self.sender = EditionSender(settings, store, owner=owner, now=now, stop=self._stop, pictures=self.pictures)

    def scheduled(self) -> list[ChannelConfig]:
        return [c for c in newsletter_channels(self.settings) if c.schedule]

    def prepare(self) -> None:
        """A schedule row per scheduled newsletter (a changed cron expression starts over)."""
        now = self.now()
        channels = self.scheduled()
        if newsletter_channels(self.settings) and not self.settings.platform.base_url.startswith("https://"):
            log.warning("platform.base_url is not https: mail clients offer one-click unsubscribe (RFC 8058) only "
                        "for https links, and the newsletter's links should not travel in the clear")
        self.plans.sync_channels({c.id: c.schedule for c in channels},
                                 {c.id: self._next_slot(c, now) for c in channels}, now)

    async def tick(self) -> list[SendReport]:
        """Make the editions of due slots, then send what editions have left."""
        async with self._running:
            for channel in self.scheduled():
                if not self._stop.is_set():
                    await self._due_slot(channel)
            reports = []
            for edition in await asyncio.to_thread(self.letters.unfinished):
                if not self._stop.is_set():
                    reports.append(await self.sender.send(edition))
        return [r for r in reports if r.status != "busy"]

    async def publish_now(self, channel_id: str) -> list[SendReport]:
        """`hub publish --channel ID`: send what unfinished editions have due, then, unless
        one of them still holds the next back, make an edition for this minute and send it.
        Reports what was done; nothing new and nothing due: an empty list."""
        async with self._running:
            reports = [await self.sender.send(e) for e in await asyncio.to_thread(self.letters.unfinished, channel_id)]
            if not await asyncio.to_thread(self.letters.blocking, channel_id):
                channel = newsletter_channel(self.settings, channel_id)
                now = self.now()
                made = await asyncio.to_thread(self.make_edition, channel, now.replace(second=0, microsecond=0), now)
                if made and made.status == "sending" and made.id not in {r.edition_id for r in reports}:
                    reports.append(await self.sender.send(made))
        return [r for r in reports if r.status != "sending" or r.counts or r.error or r.resent]

    async def close(self, grace: float) -> None:
        """Stop after the mail in hand (its mark is written, the rest goes back to pending);
        wait up to `grace` seconds."""
        self._stop.set()
        try:
            await asyncio.wait_for(self._running.acquire(), grace)
            self._running.release()
        except TimeoutError:
            log.warning("shutdown: a newsletter is still being sent; another process resumes it after its lease")

    # --- editions ------------------------------------------------------------------------------

    def make_edition(self, channel: ChannelConfig, slot: datetime, now: datetime) -> Edition | None:
        """The edition of `slot`: the one made before, or a new one if anything is new."""
        existing = self.letters.edition_at(channel.id, slot)
        if existing is not None:
            return existing
        since = self.since(channel.id, now)
        revision = digest.revision_now(self.store)  # before gathering: a later approval counts next time
        new, upcoming = digest.gather(self.store, self.settings, channel, since, now)
        if not new:
            log.info("newsletter %s: nothing new since %s, no edition", channel.id,
                     since.at.isoformat(timespec="minutes"))
            return None
        edition, made = self.letters.create_edition(channel.id, slot, now, since.at, channel.options.subject, new,
                                                    upcoming, revision)
        if made:
            log.info("newsletter %s: edition %d of %s with %d new records and %d upcoming events for %d subscribers",
                     channel.id, edition.id, slot.isoformat(timespec="minutes"), len(new), len(upcoming),
                     edition.recipients)
        return edition

    def since(self, channel_id: str, now: datetime) -> digest.Since:
        """What the last edition covered (for the first: `LOOKBACK`)."""
        last = self.letters.last_edition(channel_id)
        if last is None:
            return digest.Since(now - digest.LOOKBACK)
        return digest.Since(last.created_at, frozenset(last.new), last.revision)

    async def _due_slot(self, channel: ChannelConfig) -> None:
        now = self.now()
        if not await asyncio.to_thread(self.plans.claim_channel, channel.id, now, self.owner,
                                       now + self.settings.schedule.lease, due_only=True):
            return
        status, error, next_at = "nothing new", None, self._next_slot(channel, now)
        try:
            slot = await asyncio.to_thread(self.letters.channel_slot, channel.id) or now
            waiting = [e for e in await asyncio.to_thread(self.letters.blocking, channel.id) if e.slot != slot]
            if waiting:  # the slot stays due until the edition before it is out
                status, next_at = f"waiting for edition {waiting[0].id} to be sent", None
            elif await asyncio.to_thread(self.make_edition, channel, slot, now):
                status = "edition made"
        except Exception as exc:  # the slot stays due; the next tick tries again
            log.exception("newsletter %s: the edition of the due slot could not be made", channel.id)
            status, error, next_at = "failed", str(exc), None
        await asyncio.to_thread(self.plans.finish_channel, channel.id, self.owner, self.now(), status, error, next_at)

    def _next_slot(self, channel: ChannelConfig, now: datetime) -> datetime:
        return next_run(channel.schedule, now, self.settings.platform.timezone)

    # --- looking ahead: the preview and the dry run --------------------------------------------

    def draft(self, channel: ChannelConfig, preferences: Preferences | None = None, sample: str = "alle Themen"
              ) -> Draft:
        """The next edition as it would be made now, for a subscriber with `preferences`
        (default: every topic). Links to preferences and unsubscribing lead to the form."""
        now = self.now()
        since = self.since(channel.id, now)
        new, upcoming = digest.gather(self.store, self.settings, channel, since, now)
        entries = digest.entries(self.store, new, upcoming, now)
        opts = channel.options
        chooser = digest.Chooser(entries, self.settings.merchants, opts.sections, opts.max_items, category_title)
        chosen = chooser.digest(preferences or Preferences())
        mail = None
        if chosen is not None:
            images = image_urls(entries, self.pictures, self.settings.platform.base_url)
            mail = EditionRenderer(self.settings, channel, now, images).mail(chosen)
        return Draft(channel.id, since.at, len(new), len(upcoming), mail, sample)

    def dry_run(self, channel: ChannelConfig, folder: Path) -> tuple[Draft, list[Path]]:
        """Write the next edition for one sample subscriber (the topics of the first
        confirmed one; address and personal links replaced) as .eml and .html."""
        first = next(self.letters.confirmed(channel.id), None)
        sample = f"the topics of subscriber #{first.id}" if first else "every topic (no confirmed subscriber yet)"
        draft = self.draft(channel, first.preferences if first else None, sample)
        if draft.mail is None:
            return draft, []
        base = self.settings.platform.base_url.rstrip("/")
        link = f"{base}/newsletter?channel={channel.id}"
        html, text = draft.mail.personal(link, link)
        now = self.now()
        sender = channel.options.from_ or (self.settings.mail.from_ if self.settings.mail else SAMPLE_ADDRESS)
        env = mime.envelope(sender, channel.options.subject, channel.options.reply_to, channel.options.name,
                            channel.id, now.replace(second=0, microsecond=0))
        folder.mkdir(parents=True, exist_ok=True)
        eml, page = folder / f"{channel.id}-dry-run.eml", folder / f"{channel.id}-dry-run.html"
        eml.write_bytes(mime.newsletter(env, SAMPLE_ADDRESS, 0, link, mime.quoted(text), mime.quoted(html), now))
        page.write_text(html, encoding="utf-8")
        return draft, [eml, page]
