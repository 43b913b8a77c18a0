"""The publish tick and `hub publish`: push channels work off the delivery ledger (issue 16).

The store writes a ledger row for every channel that wants a record whenever the record is
created, changed or removed (`hub.store.ledger.announce`, in the record's own transaction).
A run of a channel takes the channel's lease (two processes never run one channel at once),
claims the rows that are due under a lease of their own, decides for each what the channel
must do (create, update or delete its copy, or nothing: unchanged, not shown, the channel
cannot), renews the leases of the rows still its own (a run slowed past its lease leaves
what another run took up to it), calls the publisher and records the outcome:

- sent: the channel confirmed; its id for the copy is kept, so an update edits it and a
  removal deletes it;
- tried again later, with backoff and jitter (`hub.ledger.retry_at`), never sooner than the
  channel's Retry-After; given up ("failed") after about three days or at once when the
  channel rejected the content;
- a doubtful outcome (the request went out, no answer came, or the process died while it
  was under way) is tried again, with the same delivery id, only where the channel drops a
  repeat (`Capabilities.dedup`); elsewhere it is "unconfirmed" until a person checks
  (`hub channels`), so nothing is ever posted twice blindly;
- a channel that answers 410 is disabled, one that refuses the token paused, one that asks
  to wait is left alone until then; `hub channels` shows each of these.

A pace (`pace: {per_hour, quiet}`) spreads deliveries evenly and keeps quiet hours; a
channel's own rate limit (Telegram: 20 a minute per chat) is counted from the ledger. A
channel with `schedule:` runs at its cron times (platform time zone); one without runs on
every publish tick. The newsletter has a ledger and a job of its own (hub.newsletter). The
cockpit counts channel deliveries from the ledger's sent rows (hub.store.stats): not here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Sequence

from hub import plugins
from hub.config import ChannelConfig, Settings, options_fingerprint
from hub.cron import next_run
from hub.errors import DeliveryError, FetchError, HubError
from hub.http import Fetcher
from hub.ledger import ChannelRules, Pace, delivery_id, retry_at, rules_for
from hub.media import MediaStore, NotAnImage
from hub.models import Item
from hub.store import Store
from hub.store.ledger import ChannelChange, ChannelSpec, ChannelState, Claimed, Copy, LedgerStore, Outcome
from hub.store.scheduling import ScheduleStore
from renderers.base import (Capabilities, ChannelError, ChannelRef, ImageFile, Merchant, Outgoing, Picture, Preview,
                            Receipt, capabilities_of, is_publisher, is_record_publisher, item_key, network_error)
from schedules.clock import Clock, SystemClock

log = logging.getLogger("hub.publish")
PUBLISH_BATCH = 1000  # most deliveries one run of a channel starts; the rest go out on the next run
DRY_RUN_SHOWN = 10  # deliveries a dry run renders in full
PRUNE_EVERY = timedelta(hours=1)
# Outcomes written to the ledger together: after a crash, at most these (and those in flight)
# are sent again, each with its delivery id; fewer would cost a commit (an fsync) for each.
FLUSH_EVERY = 20
NOT_ATTEMPTED = "released"

Status = Literal["published", "nothing new", "failed", "busy", "dry run", "waiting", "disabled", "paused"]


@dataclass
class PublishReport:
    """One line of `hub publish`'s summary."""

    channel_id: str
    status: Status
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    error: str | None = None
    titles: list[str] = field(default_factory=list)  # what a dry run would send
    previews: list[tuple[str, Preview]] = field(default_factory=list)  # (what, how it looks), dry run
    left: int = 0  # due deliveries the run left for later (pace, rate limit, batch)


def push_channels(settings: Settings) -> list[ChannelConfig]:
    """Channels whose renderer publishes (pull channels are served by the web app; the
    newsletter runs as a job of its own)."""
    return [c for c in settings.channel_list() if is_publisher(plugins.renderer(c.renderer))]


def channel_rules(settings: Settings, channel: ChannelConfig) -> ChannelRules:
    rule = channel.include
    return rules_for(rule.kinds, rule.merchants, rule.categories, rule.tags,
                     {m.id: m.category for m in settings.merchants})


def prepare_channels(settings: Settings, store: Store, now: datetime | None = None) -> None:
    """Every push channel known to the store before any record can arrive for it: its
    schedule and lease row, and its rules in the ledger (a channel gets the records created
    or changed after it was added, never the archive)."""
    now = now or SystemClock().now()
    channels = push_channels(settings)
    ScheduleStore(store).sync_channels({c.id: c.schedule for c in channels},
                                       {c.id: _next_run(settings, c, now) for c in channels}, now)
    LedgerStore(store).sync_channels({c.id: ChannelSpec(c.renderer, channel_rules(settings, c),
                                                        options_fingerprint(c.options)) for c in channels}, now)


@dataclass
class Job:
    """One claimed row and what the run does about it."""

    row: Claimed
    action: Literal["create", "update", "delete", "recreate", "skip"]
    out: Outgoing | None = None
    copy: Copy | None = None
    content_hash: str | None = None
    reason: str | None = None  # why it is skipped
    copy_dropped: bool = False  # a recreate's delete went through


class ChannelPublisher:
    def __init__(self, settings: Settings, store: Store, fetcher: Fetcher, *, clock: Clock, owner: str,
                 media: MediaStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.plans = ScheduleStore(store)
        self.ledger = LedgerStore(store)
        self.fetcher = fetcher
        self.clock = clock
        self.owner = owner
        self.media = media or MediaStore(settings.data_dir, settings.base_dir, store.records.media, fetcher)
        self._images = _Images(self.media)
        self._running = asyncio.Lock()  # held while the tick runs; shutdown waits for it
        self._pruned_at: datetime | None = None

    async def tick(self) -> list[PublishReport]:
        """Run every push channel that is due."""
        async with self._running:
            reports = [await self._run(c, scheduled=True) for c in push_channels(self.settings)]
            await self._prune()
        return [r for r in reports if r is not None]

    async def publish(self, channel_ids: Sequence[str] | None = None, *, dry_run: bool = False) -> list[PublishReport]:
        """Run channels now, whatever their schedule (`hub publish`); pace, quiet hours and
        the channels' own limits still hold. A dry run sends nothing and changes nothing."""
        chosen = [c for c in push_channels(self.settings) if not channel_ids or c.id in channel_ids]
        if dry_run:
            return [await self._dry_run(c) for c in chosen]
        return [r for r in [await self._run(c, scheduled=False) for c in chosen] if r is not None]

    async def close(self, grace: float) -> None:
        """Let a running publication finish, for up to `grace` seconds."""
        try:
            await asyncio.wait_for(self._running.acquire(), grace)
        except TimeoutError:
            log.warning("shutdown: a publication is still running; its deliveries are taken up after their lease")

    # --- one run of one channel -------------------------------------------------------------

    async def _run(self, channel: ChannelConfig, *, scheduled: bool) -> PublishReport | None:
        now = self.clock.now()
        until = now + self.settings.schedule.lease
        if not await asyncio.to_thread(self.plans.claim_channel, channel.id, now, self.owner, until,
                                       due_only=scheduled):
            return None if scheduled else PublishReport(channel.id, "busy")
        try:
            report = await self._deliver(channel, now)
        except Exception as exc:  # e.g. the database went away: claimed rows return after their lease
            log.exception("publishing channel %s failed", channel.id)
            report = PublishReport(channel.id, "failed", error=str(exc))
        next_at = _next_run(self.settings, channel, now) if scheduled else None
        await asyncio.to_thread(self.plans.finish_channel, channel.id, self.owner, self.clock.now(),
                                report.status, report.error, next_at)
        if report.sent or report.failed:
            log.info("channel %s: %d sent, %d skipped, %d failed%s", channel.id, report.sent, report.skipped,
                     report.failed, f" ({report.error})" if report.error else "")
        return report

    async def _deliver(self, channel: ChannelConfig, now: datetime) -> PublishReport:
        publisher = plugins.renderer(channel.renderer)()
        caps = capabilities_of(publisher)
        state = await asyncio.to_thread(self.ledger.channel, channel.id)
        if state is None:  # not prepared by this process's config yet
            return PublishReport(channel.id, "nothing new")
        if state.state in ("disabled", "paused"):
            return PublishReport(channel.id, state.state, error=state.state_reason)
        if state.hold_until is not None and state.hold_until > now:
            return PublishReport(channel.id, "waiting",
                                 error=f"the channel asked to wait until {state.hold_until:%H:%M:%S} UTC")
        await asyncio.to_thread(self.ledger.reclaim_stale, channel.id, now,
                                caps.dedup if is_record_publisher(publisher) else _LEGACY_DEDUP)
        budget = await asyncio.to_thread(self._budget, channel, caps, state, now)
        claimed = await asyncio.to_thread(self.ledger.claim, channel.id, now, self.owner,
                                          now + self.settings.schedule.lease, budget)
        if not claimed:
            left = len(await asyncio.to_thread(self.ledger.peek, channel.id, now, 1))
            if left:
                return PublishReport(channel.id, "waiting", left=left, error=self._why_waiting(channel, state, now))
            return PublishReport(channel.id, "nothing new")
        jobs = await asyncio.to_thread(self._jobs, channel, caps, claimed, now)
        run = _Run(self, channel, caps)
        for job in jobs:
            if job.action == "skip":
                await run.done(job, None)
        sending, deadline = await self._still_held(channel, [j for j in jobs if j.action != "skip"])
        if is_record_publisher(publisher):
            await self._send(channel, publisher, caps, sending, run, deadline)
        else:
            await self._send_legacy(channel, publisher, sending, run)
        return await run.close(state, now)

    async def _still_held(self, channel: ChannelConfig, jobs: list[Job]) -> tuple[list[Job], datetime]:
        """The jobs whose rows this run still holds, their leases (and the channel's) renewed
        from now, and the time by which the last of them must have started: the rest is
        given back before the leases end. A run slowed down past its lease (a loaded
        machine, a slow database) may have lost rows to another run, which sends them."""
        now = self.clock.now()
        until = now + self.settings.schedule.lease
        await asyncio.to_thread(self.plans.extend_channel, channel.id, self.owner, until)
        held = await asyncio.to_thread(self.ledger.renew, self.owner, [j.row.id for j in jobs], until)
        if len(held) < len(jobs):
            log.warning("channel %s: another run took up %d deliveries while this one was slow; they are left to it",
                        channel.id, len(jobs) - len(held))
        return [j for j in jobs if j.row.id in held], now + self.settings.schedule.lease * 0.8

    def _budget(self, channel: ChannelConfig, caps: Capabilities, state: ChannelState, now: datetime) -> int:
        """Deliveries this run may start: the batch, the pace's slots, the channel's own limit."""
        budget = PUBLISH_BATCH
        slots = self._pace(channel).budget(now, state.next_slot_at, self.settings.schedule.publish_tick)
        if slots is not None:
            budget = min(budget, slots)
        if caps.rate is not None and budget:
            limit, period = caps.rate
            budget = min(budget, max(0, limit - self.ledger.sent_since(channel.id, now - period)))
        return budget

    def _pace(self, channel: ChannelConfig) -> Pace:
        options = getattr(channel.options, "pace", None)
        return options.pace(self.settings.platform.timezone) if options is not None else Pace()

    def _why_waiting(self, channel: ChannelConfig, state: ChannelState, now: datetime) -> str:
        pace = self._pace(channel)
        if pace.is_quiet(now):
            return f"quiet hours until {pace.quiet_ends(now):%H:%M} UTC"
        if state.next_slot_at is not None and state.next_slot_at > now:
            return f"pace: the next delivery at {state.next_slot_at:%H:%M:%S} UTC"
        return "the channel's rate limit"

    # --- what each claimed row asks for -------------------------------------------------------

    def _jobs(self, channel: ChannelConfig, caps: Capabilities, rows: Sequence[Claimed], now: datetime) -> list[Job]:
        ids = {r.record_id for r in rows}
        records = self.ledger.records(ids)
        copies = self.ledger.copies(channel.id, ids)
        visible = self.ledger.visible(channel.id, [r.record_id for r in rows if r.op == "publish"
                                                   and r.record_id not in copies], now)
        pictures = self.media.pictures(m.url for rec in records.values() for m in rec.item.media if m.type == "image")
        return [self._job(channel, caps, row, records.get(row.record_id), copies.get(row.record_id),
                          row.record_id in visible, pictures) for row in rows]

    def _job(self, channel: ChannelConfig, caps: Capabilities, row: Claimed, record: Any, copy: Copy | None,
             visible: bool, pictures: dict) -> Job:
        if row.op == "withdraw":
            if copy is None:
                return Job(row, "skip", reason="nothing to withdraw: the channel does not have it")
            if not caps.delete:
                return Job(row, "skip", copy=copy, reason="the channel cannot delete: its copy stays")
            return Job(row, "delete", self._outgoing(channel, row, record, "deleted", copy, pictures), copy)
        if record is None:
            return Job(row, "skip", reason="the record no longer exists")
        digest = _content_hash(record)
        if copy is None:
            if not visible:
                return Job(row, "skip", reason="not shown now: expired, over its merchant's quota, or hidden")
            return Job(row, "create", self._outgoing(channel, row, record, "created", None, pictures), None, digest)
        if copy.content_hash == digest:
            return Job(row, "skip", copy=copy, content_hash=digest, reason="unchanged on this channel")
        if caps.update:
            return Job(row, "update", self._outgoing(channel, row, record, "updated", copy, pictures), copy, digest)
        if caps.delete:
            return Job(row, "recreate", self._outgoing(channel, row, record, "created", copy, pictures), copy, digest)
        return Job(row, "skip", copy=copy, reason="the channel cannot edit: its copy stays as it was")

    def _outgoing(self, channel: ChannelConfig, row: Claimed, record: Any, event: str, copy: Copy | None,
                  pictures: dict) -> Outgoing:
        base = self.settings.platform.base_url.rstrip("/")
        item = record.item if record is not None else _GONE
        m = self.settings.merchant(item.merchant_id)
        merchant = Merchant(m.id, m.name, m.category, m.district, m.website) if m else Merchant(item.merchant_id,
                                                                                                  item.merchant_id)
        shown = []
        for media in item.media:
            if media.type == "image" and media.url in pictures:
                p = pictures[media.url]
                shown.append(Picture(media.url, base + p.src if p.src.startswith("/") else p.src,
                                     media.alt, p.width, p.height))
        return Outgoing(id=delivery_id(channel.id, row.record_id, row.version), event=event,  # type: ignore[arg-type]
                        record_id=row.record_id, version=row.version, occurred_at=row.created_at, item=item,
                        link=f"{base}/items/{row.record_id}", merchant=merchant,
                        label=record.label if record is not None else None, pictures=tuple(shown),
                        remote_id=copy.remote_id if copy else None, remote_url=copy.remote_url if copy else None,
                        remote=dict(copy.state) if copy else {}, attempt=row.attempts)

    # --- sending ------------------------------------------------------------------------------

    async def _send(self, channel: ChannelConfig, publisher: Any, caps: Capabilities, jobs: list[Job],
                    run: _Run, deadline: datetime) -> None:
        """Call the publisher for every job, `concurrency` at a time; each outcome is recorded
        as it comes (`_Run`). The jobs not started when the channel asks to stop, or at the
        `deadline` (a slow channel's run must end within its lease), are given back."""
        ref = self._ref(channel)
        many = getattr(publisher, "send_many", None)
        if callable(many) and all(j.action != "recreate" for j in jobs):
            if jobs:
                found = await _guarded(channel, many(channel.options, ref, [j.out for j in jobs], self.fetcher),
                                       len(jobs))
                for job, result in zip(jobs, found):
                    await run.done(job, result)
            return
        stop = asyncio.Event()
        slots = asyncio.Semaphore(max(1, getattr(channel.options, "concurrency", caps.concurrency)))

        async def one(job: Job) -> None:
            async with slots:
                if stop.is_set() or self.clock.now() >= deadline:
                    await run.done(job, None)
                    return
                result = await self._call(channel, publisher, ref, job)
                if isinstance(result, ChannelError) and result.stop:
                    stop.set()
                await run.done(job, result)

        await asyncio.gather(*(one(j) for j in jobs))

    async def _call(self, channel: ChannelConfig, publisher: Any, ref: ChannelRef, job: Job) -> Receipt | ChannelError:
        opts, out = channel.options, job.out
        assert out is not None
        try:
            if job.action == "recreate":  # a channel that cannot edit: delete its copy, post anew
                await publisher.delete(opts, ref, _as_event(out, "deleted"), self.fetcher)
                job.copy_dropped = True
                return await publisher.create(opts, ref, out, self.fetcher)
            method = {"create": publisher.create, "update": publisher.update, "delete": publisher.delete}[job.action]
            return await method(opts, ref, out, self.fetcher)
        except Exception as exc:
            return _as_channel_error(channel, exc)

    async def _send_legacy(self, channel: ChannelConfig, publisher: Any, jobs: list[Job], run: _Run) -> None:
        """A publisher of the first contract gets the new records as items; what it reports
        per item decides. Edits and removals it cannot take are skipped (`_job`)."""
        if not jobs:
            return
        try:
            deliveries = await publisher.publish(channel.options, self._ref(channel), [j.out.item for j in jobs],
                                                 self.fetcher)
        except Exception as exc:
            error = _as_channel_error(channel, exc)
            for job in jobs:
                await run.done(job, error)
            return
        by_key = {d.item_key: d for d in deliveries}
        for job in jobs:
            d = by_key.get(item_key(job.out.item))
            if d is None or d.status == "failed":
                await run.done(job, ChannelError(d.detail if d else "the publisher did not report this item"))
            else:
                await run.done(job, Receipt(None, skipped=(d.detail or "skipped") if d.status == "skipped" else None))

    # --- recording ------------------------------------------------------------------------------

    def _outcome(self, job: Job, result: Receipt | ChannelError | None, caps: Capabilities, now: datetime) -> Outcome:
        row = job.row
        base = dict(row_id=row.id, record_id=row.record_id, version=row.version)
        if job.action == "skip":
            return Outcome(**base, status="skipped", detail=job.reason)
        event = job.out.event if job.out else None
        if result is None:
            return Outcome(**base, status=NOT_ATTEMPTED, next_try_at=now, drop_copy=job.copy_dropped)
        if isinstance(result, Receipt) and not result.confirmed:
            result = ChannelError("the channel accepted the delivery without confirming it", maybe_sent=True)
        if isinstance(result, Receipt):
            if event == "deleted":
                return Outcome(**base, status="skipped" if result.skipped else "sent", event=event,
                               detail=result.skipped, drop_copy=True)
            remote = result.remote if result.remote is not None else (job.copy.state if job.copy else {})
            copy = Copy(result.remote_id, result.url or (job.copy.remote_url if job.copy else None), remote,
                        job.content_hash, row.version)
            return Outcome(**base, status="skipped" if result.skipped else "sent", event=event, detail=result.skipped,
                           copy=copy)
        return self._failure(job, result, caps, now, base)

    def _failure(self, job: Job, error: ChannelError, caps: Capabilities, now: datetime, base: dict) -> Outcome:
        row = job.row
        doubt = row.doubt_since or (now if error.maybe_sent else None)
        common = dict(base, detail=str(error), doubt_since=doubt, drop_copy=job.copy_dropped,
                      event=job.out.event if job.out else None)
        if error.stop in ("disable", "pause"):  # the row waits for the channel to come back
            return Outcome(**common, status="pending", next_try_at=None)
        if error.stop == "wait":
            return Outcome(**common, status="pending", next_try_at=now + timedelta(seconds=error.retry_after or 60))
        if error.permanent and not error.maybe_sent:
            return Outcome(**common, status="failed")
        later = retry_at(now, row.attempts, row.first_try_at or now, error.retry_after)
        if doubt is not None and (caps.dedup is None or later is None or later > doubt + caps.dedup):
            return Outcome(**{**common, "detail": f"{error}; it may have arrived: check the channel, then "
                              "`hub channels retry` or `hub channels mark-sent`"}, status="unconfirmed")
        if later is None:
            return Outcome(**common, status="failed")
        return Outcome(**common, status="pending", next_try_at=later)

    # --- a dry run ------------------------------------------------------------------------------

    async def _dry_run(self, channel: ChannelConfig) -> PublishReport:
        now = self.clock.now()
        publisher = plugins.renderer(channel.renderer)()
        caps = capabilities_of(publisher)
        rows = await asyncio.to_thread(self.ledger.peek, channel.id, now, PUBLISH_BATCH)
        jobs = await asyncio.to_thread(self._jobs, channel, caps, rows, now)
        going = [j for j in jobs if j.action != "skip"]
        ref = self._ref(channel)
        previews = []
        for job in going[:DRY_RUN_SHOWN]:
            what = f"{job.out.event} record {job.row.record_id} (version {job.row.version}): {job.out.item.title}"
            if is_record_publisher(publisher):
                try:
                    previews.append((what, publisher.preview(channel.options, ref, job.out)))
                except HubError as exc:
                    previews.append((what, Preview(f"cannot be rendered: {exc}", None)))
            else:
                previews.append((what, Preview(job.out.item.title, job.out.item.to_dict())))
        state = await asyncio.to_thread(self.ledger.channel, channel.id)
        note = None
        if state is not None and state.state != "active":
            note = f"the channel is {state.state}: {state.state_reason or ''}".rstrip(": ")
        elif state is not None and going and await asyncio.to_thread(self._budget, channel, caps, state, now) == 0:
            note = f"nothing goes out right now ({self._why_waiting(channel, state, now)})"
        return PublishReport(channel.id, "dry run", skipped=len(jobs) - len(going), error=note,
                             titles=[j.out.item.title for j in going], previews=previews)

    # --- helpers --------------------------------------------------------------------------------

    def _ref(self, channel: ChannelConfig) -> ChannelRef:
        platform = self.settings.platform
        return ChannelRef(channel.id, platform.name, platform.base_url, platform.timezone, self.settings.base_dir,
                          platform.language, self._images)

    async def _prune(self) -> None:
        now = self.clock.now()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        try:
            await asyncio.to_thread(self.ledger.prune, now - self.settings.schedule.retention)
        except Exception:  # upkeep: tried again in an hour
            log.warning("could not prune the delivery ledger", exc_info=True)


class _Run:
    """One run of a channel: its outcomes are written to the ledger as they come,
    `FLUSH_EVERY` at a time, so a process killed in the middle of a run sends again at most
    those not yet written and those in flight (each with its delivery id), not the batch."""

    def __init__(self, publisher: ChannelPublisher, channel: ChannelConfig, caps: Capabilities) -> None:
        self.publisher, self.channel, self.caps = publisher, channel, caps
        self.outcomes: list[Outcome] = []
        self.unwritten: list[Outcome] = []
        self.errors: list[ChannelError] = []
        self.attempted = 0
        self._writing = asyncio.Lock()

    async def done(self, job: Job, result: Receipt | ChannelError | None) -> None:
        """`result` None: skipped on purpose (`job.action`), or not attempted (the channel
        asked to stop first)."""
        outcome = self.publisher._outcome(job, result, self.caps, self.publisher.clock.now())
        if isinstance(result, ChannelError):
            self.errors.append(result)
        self.attempted += result is not None
        self.outcomes.append(outcome)
        self.unwritten.append(outcome)
        if len(self.unwritten) >= FLUSH_EVERY:
            await self.write()

    async def write(self, change: ChannelChange | None = None) -> None:
        async with self._writing:
            batch, self.unwritten = self.unwritten, []
            if batch or change is not None:
                await asyncio.to_thread(self.publisher.ledger.finish, self.channel.id, self.publisher.owner, batch,
                                        self.publisher.clock.now(), change or ChannelChange())

    async def close(self, state: ChannelState, started: datetime) -> PublishReport:
        """Write the rest and what the run changes about the channel; the run's report."""
        p, now = self.publisher, self.publisher.clock.now()
        stopping = next((e for e in self.errors if e.stop), None)
        error = str(self.errors[0]) if self.errors else None
        state_change = {"disable": "disabled", "pause": "paused"}.get(stopping.stop) if stopping else None
        await self.write(ChannelChange(
            next_slot_at=p._pace(self.channel).taken(self.attempted, started, state.next_slot_at,
                                                     p.settings.schedule.publish_tick),
            sent_at=now if any(o.status == "sent" for o in self.outcomes) else None, error=error,
            hold_until=(now + timedelta(seconds=stopping.retry_after or 60)
                        if stopping and stopping.stop == "wait" else None),
            state=state_change, state_reason=str(stopping) if state_change else None))
        counts = Counter(o.status for o in self.outcomes)
        failed = counts["pending"] + counts["failed"] + counts["unconfirmed"]
        status: Status = state_change or ("failed" if failed else "published" if counts["sent"] or counts["skipped"]
                                          else "waiting")  # type: ignore[assignment]
        return PublishReport(self.channel.id, status, counts["sent"], counts["skipped"], failed, error,
                             left=counts[NOT_ATTEMPTED])


class _Images:
    """The records' images for uploads: the hub's cleaned 960 px copies (hub.media), made now
    if ingest has not yet."""

    def __init__(self, media: MediaStore) -> None:
        self.media = media

    async def read(self, url: str) -> ImageFile:
        path = await self.media.variant_for(url)
        return ImageFile(await asyncio.to_thread(path.read_bytes), "image/jpeg", f"{path.parent.name[:16]}.jpg")


# The first contract had no dedup; the old ledger sent a crashed run's items again after its lease.
_LEGACY_DEDUP = timedelta(days=36500)
_GONE = Item(source_id="", external_id="", merchant_id="", title="")


def _content_hash(record: Any) -> str:
    """What a channel shows of a record, as a hash: an update that changes none of it is skipped."""
    return hashlib.blake2b(f"{record.item.content_hash}\x1f{record.label or ''}".encode(), digest_size=12).hexdigest()


def _as_event(out: Outgoing, event: str) -> Outgoing:
    return replace(out, event=event)  # type: ignore[arg-type]


def _as_channel_error(channel: ChannelConfig, exc: Exception) -> ChannelError:
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, FetchError):
        return network_error(exc, f"channel {channel.id}")
    if isinstance(exc, (DeliveryError, NotAnImage)):
        return ChannelError(str(exc))
    log.error("the %s publisher failed on channel %s", channel.renderer, channel.id, exc_info=exc)
    return ChannelError(f"unexpected error in the {channel.renderer} publisher: {exc!r}")


async def _guarded(channel: ChannelConfig, work: Any, n: int) -> list[Receipt | ChannelError]:
    try:
        found = list(await work)
    except Exception as exc:
        return [_as_channel_error(channel, exc)] * n
    return [r if isinstance(r, (Receipt, ChannelError)) else ChannelError("the publisher reported nothing")
            for r in found] + [ChannelError("the publisher reported nothing")] * (n - len(found))


def _next_run(settings: Settings, channel: ChannelConfig, now: datetime) -> datetime:
    """A scheduled channel's next cron time; an unscheduled one is due at every tick."""
    return next_run(channel.schedule, now, settings.platform.timezone) if channel.schedule else now
