"""Merchant activity (issue 17): how often and how quickly each participant posts, on which
channels, how reliable its sources are and how complete its records are, an activity score
per month, and the participants who went quiet.

The activity score of a month, 0 to 100, is the weighted mean of five parts, each 0 to 1
(weights and targets in `admin.activity` of the config; defaults in brackets):

    posts         records posted that month / target_posts [8], at most 1
    speed         median delay from the merchant's post to the platform: 1 up to `fast` [1h],
                  0 from `slow` [3d] on, in between falling with the logarithm of the delay;
                  0 without posts
    reliability   successful fetches / all fetches of its sources that month; without a fetch
                  that month the part is left out (the others' weights count)
    completeness  of its records that month, the share of what applies that they have:
                  an image (all), a date (events, offers), a place (events), a price (offers)
    channels      kinds of channel it posted on that month (Facebook, Instagram, feed,
                  website, calendar) / target_channels [2], at most 1

    score = round(100 × Σ weight × part / Σ weight)       weights [35, 15, 20, 20, 10]
            (both sums over the parts that count)

A post's delay is the time from its publication to the hub's first sight of it; items of a
source's first fetch are left out (they were posted before the hub knew the source).
A merchant is quiet when its newest post is older than `admin.quiet_days` [30].
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from statistics import median
from time import monotonic
from zoneinfo import ZoneInfo

from hub.config import ActivityConfig, MerchantConfig, Settings
from hub.store.stats import StatsStore

PARTS = ("posts", "speed", "reliability", "completeness", "channels")
PART_LABELS = {"posts": "Beiträge", "speed": "Schnelligkeit", "reliability": "Zuverlässigkeit",
               "completeness": "Vollständigkeit", "channels": "Kanäle"}
CHANNEL_NAMES = {"facebook": "Facebook", "instagram": "Instagram", "website": "Website", "ical": "Kalender",
                 "rss": "Feed", "atom": "Feed", "jsonfeed": "Feed", "feed": "Feed"}
_APPLIES = {"post": ("image",), "event": ("image", "date", "place"), "offer": ("image", "date", "price")}
_FIELD_KEYS = {"image": ("image",), "date": ("event_start", "offer_valid_until"), "place": ("event_location",),
               "price": ("offer_price",)}


@dataclass(frozen=True)
class Activity:
    """One merchant in one month."""

    merchant_id: str
    name: str
    month: date  # its first day
    posts: int  # records (one per real thing)
    items: int  # entries on all its channels
    channels: dict[str, int]  # channel name -> entries
    median_delay: timedelta | None
    fetches: int
    failures: int
    fields: dict[str, float]  # image/date/place/price -> share of the records it applies to that have it
    parts: dict[str, float | None]  # None: left out of the score
    score: int

    @property
    def reliability(self) -> float | None:
        return (self.fetches - self.failures) / self.fetches if self.fetches else None


@dataclass(frozen=True)
class Quiet:
    merchant: MerchantConfig
    last_post: datetime | None  # None: never posted anything
    days: int | None
    failing_sources: list[str] = field(default_factory=list)  # perhaps it is the hub's fault


def month_of(day: date) -> date:
    return day.replace(day=1)


def next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


def bounds(month: date, zone: str) -> tuple[datetime, datetime]:
    """The month as UTC instants [start, end), in the platform's time zone."""
    tz = ZoneInfo(zone)
    start = datetime.combine(month, time(), tz)
    end = datetime.combine(next_month(month), time(), tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def speed(delay: timedelta | None, cfg: ActivityConfig) -> float:
    if delay is None:
        return 0.0
    fast, slow = max(cfg.fast.total_seconds(), 1.0), max(cfg.slow.total_seconds(), 2.0)
    seconds = delay.total_seconds()
    if seconds <= fast:
        return 1.0
    if seconds >= slow or slow <= fast:
        return 0.0
    return 1.0 - math.log(seconds / fast) / math.log(slow / fast)


def score(parts: dict[str, float | None], cfg: ActivityConfig) -> int:
    """The weighted mean of the parts that count (None: left out), 0-100."""
    weights = cfg.weights.model_dump()
    counted = [p for p in PARTS if parts.get(p) is not None]
    total = sum(weights[p] for p in counted)
    if total <= 0:
        return 0
    return round(100 * sum(weights[p] * parts[p] for p in counted) / total)  # type: ignore[operator]


PAST_KEPT = 600.0  # seconds a past month's activity is kept (`month_activity`)
_past: dict[tuple, tuple[float, Settings, list[Activity]]] = {}


def month_activity(settings: Settings, store, month: date) -> list[Activity]:
    """Every configured merchant's activity in `month`, highest score first. A month that is
    over is kept for `PAST_KEPT` seconds: only late edits change it, and a big town's month
    reads tens of thousands of records (the cockpit pages through them and shows six months)."""
    if month >= month_of(datetime.now(ZoneInfo(settings.platform.timezone)).date()):
        return _month_activity(settings, store, month)
    key = (store.url, store.schema, month)
    now = monotonic()
    kept = _past.get(key)
    if kept is not None and kept[1] is settings and now - kept[0] < PAST_KEPT:  # a reloaded config: anew
        return kept[2]
    found = _month_activity(settings, store, month)
    for old in [k for k, (at, _, _) in _past.items() if now - at >= PAST_KEPT]:
        _past.pop(old, None)
    _past[key] = (now, settings, found)
    return found


def _month_activity(settings: Settings, store, month: date) -> list[Activity]:
    cfg = settings.admin.activity
    stats = StatsStore(store)
    start, end = bounds(month, settings.platform.timezone)
    items, channels = Counter(), defaultdict(Counter)
    for merchant_id, connector, n in stats.posted_counts(start, end):
        items[merchant_id] += n
        channels[merchant_id][CHANNEL_NAMES.get(connector, connector)] += n
    delays = stats.posting_delays(start, end)  # microseconds
    records = defaultdict(dict)  # merchant id -> kind -> (records, field -> how many have it)
    for (merchant_id, kind), facts in stats.record_fields(start, end, _FIELD_KEYS).items():
        records[merchant_id][kind] = facts
    fetched = stats.fetch_days(start.date(), (end - timedelta(seconds=1)).date())
    source_of = {s.id: m.id for m, s in settings.sources()}
    fetches, failures = Counter(), Counter()
    for source_id, (f, x) in fetched.items():
        if source_id in source_of:
            fetches[source_of[source_id]] += f
            failures[source_of[source_id]] += x
    found = []
    for m in settings.merchants:
        delay = timedelta(microseconds=median(delays[m.id])) if m.id in delays else None
        posts = sum(n for n, _ in records[m.id].values())
        shares = _completeness(records[m.id])
        parts = {
            "posts": min(1.0, posts / cfg.target_posts),
            "speed": speed(delay, cfg) if posts or items[m.id] else 0.0,
            "reliability": (fetches[m.id] - failures[m.id]) / fetches[m.id] if fetches[m.id] else None,
            "completeness": _mean(shares.values()) if posts else 0.0,
            "channels": min(1.0, len(channels[m.id]) / cfg.target_channels),
        }
        found.append(Activity(m.id, m.name, month, posts, items[m.id], dict(channels[m.id]), delay,
                              fetches[m.id], failures[m.id], shares, parts, score(parts, cfg)))
    return sorted(found, key=lambda a: (-a.score, a.name.casefold()))


def history(settings: Settings, store, last: date, months: int = 6,
            known: list[Activity] | None = None) -> dict[str, dict[date, int]]:
    """merchant id -> month -> score, for the `months` months up to `last` (oldest first);
    `known`: `month_activity` of `last`, if the caller has it already."""
    found: dict[str, dict[date, int]] = defaultdict(dict)
    month = month_of(last)
    wanted = [month]
    for _ in range(months - 1):
        month = month_of(month - timedelta(days=1))
        wanted.append(month)
    for month in reversed(wanted):
        for a in known if known is not None and month == month_of(last) else month_activity(settings, store, month):
            found[a.merchant_id][month] = a.score
    return dict(found)


def quiet(settings: Settings, store, now: datetime, failing: set[str] = frozenset()) -> list[Quiet]:
    """Merchants whose newest post is older than `admin.quiet_days` (or who never posted),
    longest quiet first. `failing`: ids of sources that fail now."""
    last = StatsStore(store).last_posts()
    limit = timedelta(days=settings.admin.quiet_days)
    found = []
    for m in settings.merchants:
        at = last.get(m.id)
        if at is not None and now - at < limit:
            continue
        broken = [s.id for s in m.sources if s.id in failing]  # type: ignore[union-attr]
        found.append(Quiet(m, at, (now - at).days if at else None, broken))
    return sorted(found, key=lambda q: (q.last_post is not None, q.last_post or now, q.merchant.name.casefold()))


def reminder(settings: Settings, q: Quiet, sender: str) -> tuple[str, str]:
    """A friendly reminder in German: (subject, body)."""
    platform = settings.platform.name
    channels = sorted({CHANNEL_NAMES.get(s.connector, s.connector) for s in q.merchant.sources})  # type: ignore[union-attr]
    where = _enumerate(channels) if channels else "Ihren gewohnten Kanälen"
    if q.last_post is not None:
        day = q.last_post.astimezone(ZoneInfo(settings.platform.timezone)).strftime("%d.%m.%Y")
        since = f"seit Ihrem letzten Beitrag am {day} ist es auf {platform} still um Sie geworden"
    else:
        since = f"auf {platform} ist von Ihnen bisher noch nichts zu sehen"
    subject = f"Wir vermissen Ihre Neuigkeiten auf {platform}"
    body = (f"Guten Tag,\n\n"
            f"{since} – dabei schauen viele Menschen aus der Stadt regelmäßig vorbei, um zu erfahren, "
            f"was es bei {q.merchant.name} Neues gibt.\n\n"
            f"Es genügt ein kurzer Beitrag auf {where}: ein Angebot, eine Veranstaltung, ein Foto aus dem "
            f"Alltag. Sie müssen nichts doppelt eintragen – was Sie dort veröffentlichen, erscheint "
            f"automatisch auch auf {platform}.\n\n"
            f"Wenn etwas nicht klappt oder Sie Fragen haben, antworten Sie einfach auf diese Nachricht; "
            f"wir helfen gern.\n\n"
            f"Herzliche Grüße\n{sender}\n{platform}\n")
    return subject, body


def _completeness(kinds: dict[str, tuple[int, dict[str, int]]]) -> dict[str, float]:
    """field -> share of the records it applies to that have it; `kinds`: kind -> (records,
    field -> how many of them have it)."""
    have, applies = Counter(), Counter()
    for kind, (n, had) in kinds.items():
        for name in _APPLIES.get(kind, ("image",)):
            applies[name] += n
            have[name] += had[name]
    return {name: have[name] / applies[name] for name in ("image", "date", "place", "price") if applies[name]}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _enumerate(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " oder " + names[-1]
