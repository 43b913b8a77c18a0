"""Sending an edition: the lease, the batches, the ledger marks.

    claim the edition's lease (or leave it to the process that holds it)
    open one SMTP connection
    repeat: claim the next batch of due recipients (-> sending); for each: choose their
            records, render, wait for the pace, hand over, mark (the lease renewed as it goes)
    close: the edition is done when no recipient needs more work; else the lease is given
           back and deferred recipients are tried when they are due

A mail is marked sent only after the server accepted it. The marks are written by a
background writer in small groups while the next mails go out ("group commit"), so a
mail costs no fsync of its own; at a crash, the mails accepted but not yet marked are the
only ones sent again. The sender never runs more than MAX_UNMARKED mails ahead of the
writer, so that window stays small however slow the database is.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from hub.config import Settings
from hub.errors import ConfigError
from hub.newsletter import digest, mime
from hub.newsletter.options import newsletter_channel, smtp_of
from hub.newsletter.render import EditionRenderer, Mail, category_title, image_urls
from hub.newsletter.smtp import MailServer, Outcome, Pace, Unreachable
from hub.newsletter.store import MAX_ATTEMPTS, Edition, Mark, NewsletterStore, Recipient
from hub.newsletter.tokens import MANAGE, UNSUBSCRIBE
from hub.store import Store

try:  # issue 17: the cockpit's statistics count newsletter deliveries
    from hub import stats
except ImportError:  # pragma: no cover - a hub without the cockpit
    stats = None  # type: ignore[assignment]

log = logging.getLogger("hub.newsletter")
RETRY_AFTER = (timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2), timedelta(hours=6))
UNREACHABLE_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(hours=1))
MAX_BATCH = 100
MARK_WINDOW = 0.02  # seconds of marks written in one transaction (at most 50 commits a second)
MAX_UNMARKED = 25  # mails accepted but not yet marked, at most: the duplicates a crash can cause
RENDERED_KEEP = 256  # distinct mails kept rendered (subscribers with the same topics share one)


@dataclass
class SendReport:
    """What one run did to one edition."""

    channel_id: str
    edition_id: int
    status: str  # sent (the edition is done) | sending (work left) | busy | failed
    counts: Counter = field(default_factory=Counter)  # this run's marks by status
    resent: int = 0  # mails in flight when the previous sender stopped, sent again
    error: str | None = None

    @property
    def sent(self) -> int:
        return self.counts["sent"]


class EditionSender:
    def __init__(self, settings: Settings, store: Store, *, owner: str, now: Callable[[], datetime],
                 stop: asyncio.Event | None = None, pictures=None) -> None:
        self.settings = settings
        self.store = store
        self.letters = NewsletterStore(store)
        self.owner = owner
        self.now = now
        self.lease = settings.schedule.lease
        self.stop = stop or asyncio.Event()
        self.pictures = pictures  # hub.media.MediaStore.pictures, for absolute image URLs

    async def send(self, edition: Edition) -> SendReport:
        report = SendReport(edition.channel_id, edition.id, "sending")
        channel = newsletter_channel(self.settings, edition.channel_id)
        if channel is None:
            report.status, report.error = "failed", f"channel '{edition.channel_id}' is no longer in the config"
            return report
        try:
            smtp = smtp_of(self.settings, channel)
        except ConfigError as exc:
            log.error("%s", exc)
            report.status, report.error = "failed", str(exc)
            return report
        now = self.now()
        resent = await asyncio.to_thread(self.letters.claim_edition, edition.id, self.owner, now, now + self.lease)
        if resent is None:
            report.status = "busy"
            return report
        report.resent = resent
        if resent:
            log.warning("newsletter %s, edition %d: %d mails were in flight when its last sender stopped; they "
                        "are sent again (same Message-ID)", edition.channel_id, edition.id, resent)
        return await self._run(edition, channel, smtp, report)

    async def _run(self, edition: Edition, channel, smtp, report: SendReport) -> SendReport:
        writer = MarkWriter(self.letters, self.now)
        try:
            run = await asyncio.to_thread(self._prepare, edition, channel)
            async with MailServer(smtp) as server:
                await self._batches(edition, run, server, writer, report)
        except Unreachable as exc:
            report.status, report.error = "failed", str(exc)
        except Exception as exc:  # a bug or a broken record must not loop: the edition waits, like for a server
            log.exception("newsletter %s, edition %d: sending failed", edition.channel_id, edition.id)
            report.status, report.error = "failed", f"unexpected error while sending: {exc!r}"
        finally:
            await writer.flush()
            report.counts.update(writer.counts)
            await asyncio.to_thread(self._close, edition, report)
        if stats is not None and report.sent:
            stats.count(self.store, "newsletter_delivery", channel=edition.channel_id, n=report.sent,
                        timezone=self.settings.platform.timezone)
        return report

    def _prepare(self, edition: Edition, channel) -> _Run:
        entries = digest.entries(self.store, edition.new, edition.upcoming, self.now())
        images = image_urls(entries, self.pictures, self.settings.platform.base_url) if self.pictures else {}
        renderer = EditionRenderer(self.settings, channel, edition.slot, images)
        opts = channel.options
        chooser = digest.Chooser(entries, self.settings.merchants, opts.sections, opts.max_items, category_title)
        envelope = mime.envelope(smtp_of(self.settings, channel).sender, edition.subject, opts.reply_to, opts.name,
                                 channel.id, edition.slot)
        batch = max(1, min(MAX_BATCH, int(opts.rate)))  # about a second's worth
        return _Run(renderer, chooser, envelope, self.letters.signer(), self.settings.platform.base_url.rstrip("/"),
                    Pace(opts.rate), batch)

    async def _batches(self, edition: Edition, run: _Run, server: MailServer, writer: MarkWriter,
                       report: SendReport) -> None:
        lease = _Lease(self.letters, edition.id, self.owner, self.now, self.lease)
        while not self.stop.is_set():
            if not await lease.keep(now=True):
                return _lost(edition, report)
            batch = await asyncio.to_thread(self.letters.next_batch, edition.id, self.now(), run.batch)
            if not batch:
                return
            for recipient in batch:
                if self.stop.is_set():
                    return  # the rest of the batch goes back to pending when the lease is given back
                if not await lease.keep():
                    return _lost(edition, report)
                await writer.room()
                writer.add(await self._one(recipient, run, server))

    async def _one(self, recipient: Recipient, run: _Run, server: MailServer) -> Mark:
        sub = recipient.subscriber
        if sub is None or sub.status != "confirmed":
            return Mark(recipient.delivery_id, recipient.subscriber_id, "skipped", "no longer subscribed")
        chosen = run.chooser.digest(sub.preferences)
        if chosen is None:
            return Mark(recipient.delivery_id, sub.id, "skipped", "nothing matched the subscriber's topics")
        manage = f"{run.base}/newsletter/preferences/{run.signer.make(MANAGE, sub.id, sub.nonce)}"
        unsubscribe = f"{run.base}/newsletter/unsubscribe/{run.signer.make(UNSUBSCRIBE, sub.id, sub.nonce)}"
        text, html = run.mail(chosen).wire(manage, unsubscribe)
        data = mime.newsletter(run.envelope, sub.email, sub.id, unsubscribe, text, html, self.now())
        await run.pace.wait()
        outcome = await server.send(run.envelope.sender, mime.smtp_address(sub.email), data)
        return _mark(recipient, outcome, self.now())

    def _close(self, edition: Edition, report: SendReport) -> None:
        now = self.now()
        if report.status == "busy":  # the lease is someone else's
            return
        if report.error:
            failures = (self.letters.edition(edition.id) or edition).failures
            retry = now + UNREACHABLE_BACKOFF[min(failures, len(UNREACHABLE_BACKOFF) - 1)]
            self.letters.release(edition.id, self.owner, error=report.error, next_try_at=retry)
            log.error("newsletter %s, edition %d: %s. Nothing is lost: the edition is tried again from %s",
                      edition.channel_id, edition.id, report.error, retry.isoformat(timespec="minutes"))
            return
        if self.letters.finish(edition.id, self.owner, now):
            report.status = "sent"
            return
        progress = self.letters.progress(edition.id)
        retry = None if progress["pending"] or self.stop.is_set() else self.letters.next_retry(edition.id)
        self.letters.release(edition.id, self.owner, next_try_at=retry)


@dataclass
class _Run:
    """What sending one edition needs, made once per run."""

    renderer: EditionRenderer
    chooser: digest.Chooser
    envelope: mime.Envelope
    signer: object
    base: str
    pace: Pace
    batch: int
    rendered: OrderedDict = field(default_factory=OrderedDict)

    def mail(self, chosen: digest.Digest) -> Mail:
        mail = self.rendered.get(chosen.key)
        if mail is None:
            mail = self.rendered[chosen.key] = self.renderer.mail(chosen)
            if len(self.rendered) > RENDERED_KEEP:
                self.rendered.popitem(last=False)
        return mail


class _Lease:
    """The edition's lease, renewed whenever a third of it has passed: however slow the
    server, nobody takes the edition over while this process still sends."""

    def __init__(self, letters: NewsletterStore, edition_id: int, owner: str, now: Callable[[], datetime],
                 length: timedelta) -> None:
        self.letters, self.edition_id, self.owner, self.now, self.length = letters, edition_id, owner, now, length
        self._renewed = -float("inf")

    async def keep(self, *, now: bool = False) -> bool:
        """Whether the lease is still ours (renewing it when due, or `now`)."""
        if not now and time.monotonic() - self._renewed < self.length.total_seconds() / 3:
            return True
        self._renewed = time.monotonic()
        return await asyncio.to_thread(self.letters.renew, self.edition_id, self.owner, self.now() + self.length)


class MarkWriter:
    """Writes ledger marks in the background: what has queued up within `window` seconds,
    in one transaction. Fewer, larger commits keep the writer thread from competing with
    the sender for the interpreter; the price is the duplicate window at a crash, which
    `room` keeps to `limit` mails however slow the database is."""

    def __init__(self, letters: NewsletterStore, now: Callable[[], datetime], window: float = MARK_WINDOW,
                 limit: int = MAX_UNMARKED) -> None:
        self.letters = letters
        self.now = now
        self.window = window
        self.limit = limit
        self.counts: Counter = Counter()
        self._queue: list[Mark] = []
        self._writing = 0  # marks in the transaction under way
        self._task: asyncio.Task | None = None
        self._flushing = False

    async def room(self) -> None:
        """Wait while `limit` marks or more are not yet written (the sender calls this
        before handing over the next mail)."""
        while len(self._queue) + self._writing >= self.limit and self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=self.window)

    def add(self, mark: Mark) -> None:
        self._queue.append(mark)
        self.counts[mark.status] += 1
        if self._task is None or self._task.done():
            if self._task is not None:
                self._task.result()  # a failed write stops the run: its marks were not recorded
            self._task = asyncio.create_task(self._drain())

    async def flush(self) -> None:
        """Write everything queued, now."""
        self._flushing = True
        while self._task is not None and not self._task.done() or self._queue:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._drain())
            await self._task
        if self._task is not None:
            self._task.result()

    async def _drain(self) -> None:
        while self._queue:
            if not self._flushing:
                await asyncio.sleep(self.window)
            marks, self._queue = self._queue, []
            self._writing = len(marks)
            try:
                await asyncio.to_thread(self.letters.record, marks, self.now())
            finally:
                self._writing = 0


def _lost(edition: Edition, report: SendReport) -> None:
    """Another process took the edition over (it thought this one dead): stop at once."""
    log.warning("newsletter %s, edition %d: another process took over; stopping", edition.channel_id, edition.id)
    report.status = "busy"


def _mark(recipient: Recipient, outcome: Outcome, now: datetime) -> Mark:
    if outcome.status == "sent":
        return Mark(recipient.delivery_id, recipient.subscriber_id, "sent")
    if outcome.status == "failed":
        return Mark(recipient.delivery_id, recipient.subscriber_id, "failed", outcome.detail, permanent=True)
    if recipient.attempts >= MAX_ATTEMPTS:
        return Mark(recipient.delivery_id, recipient.subscriber_id, "failed",
                    f"given up after {recipient.attempts} temporary rejections: {outcome.detail}")
    wait = RETRY_AFTER[min(recipient.attempts - 1, len(RETRY_AFTER) - 1)]
    return Mark(recipient.delivery_id, recipient.subscriber_id, "deferred", outcome.detail, next_try_at=now + wait)
