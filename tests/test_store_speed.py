"""Listings at speed (issue 14, part 8), on SQLite and PostgreSQL: the hot listings read indexes,
never a whole table; quotas asked per record agree with counts made another way; counts are
remembered only while nothing changed them; 50 readers at once share the connection pool."""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import event, inspect

from hub import moderation
from hub.models import Event, FetchState, Item, Kind, Media, Parsed
from hub.store import FetchOutcome, SourceSpec, Store

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # fixed: everything is judged with now=
MERCHANTS = ("a", "b", "c", "d")
QUOTAS = moderation.Rules({"a": moderation.MerchantRules(quota={"platform": 2}),
                           "b": moderation.MerchantRules(quota={"platform": 0}),
                           "c": moderation.MerchantRules(quota={"platform": 1}, block=re.compile(r"\bGewinnspiel", re.I)),
                           "d": moderation.MerchantRules(quota={"other": 1})})


def post(n: int, merchant: str, *, hours: float, title: str | None = None, start: datetime | None = None,
         image: bool = False) -> Item:
    return Item(source_id=f"{merchant}-rss", external_id=f"e{n}", merchant_id=merchant,
                title=title or f"Beitrag {n} von {merchant}", content_html=f"<p>Text {n}</p>",
                content_text=f"Ein ganz eigener Text {n}", url=f"https://{merchant}.example/{n}",
                published=T0 - timedelta(hours=hours), kind=Kind.EVENT if start else Kind.POST,
                event=Event(start=start, timezone="Europe/Berlin") if start else None,
                media=(Media(f"https://{merchant}.example/bild{n}.jpg"),) if image else ())


def fetch(store: Store, merchant: str, items, *, at: datetime = T0, gone=()) -> None:
    store.apply([FetchOutcome(f"{merchant}-rss", at, "ok", parsed=Parsed(tuple(items), complete=False, gone=gone),
                              state=FetchState())])


def town(store: Store) -> Store:
    """Four merchants over five days, posting in bursts (several at the same minute), with a
    held-back post (a block word), an event that ends, and one deleted at its source."""
    store.sync_sources([SourceSpec(f"{m}-rss", m, "rss") for m in MERCHANTS])
    store.records.configure(QUOTAS)
    n = 0
    for m, merchant in enumerate(MERCHANTS):
        items = []
        for day in range(5):
            for k in range(m + day % 3 + 1):
                n += 1
                hours = day * 24 + 2 + (k // 2) * 0.5  # two at the same moment, each time
                title = "Gewinnspiel!" if n % 11 == 0 else None
                items.append(post(n, merchant, hours=hours, title=title))
        items.append(post(n + 1, merchant, hours=30, start=T0 + timedelta(hours=3)))  # ends tomorrow
        n += 1
        fetch(store, merchant, items)
    fetch(store, "a", [], gone=("e2",), at=T0 + timedelta(minutes=1))  # removed
    return store


def within_quotas(store: Store, channel: str, now: datetime, **filters) -> list[int]:
    """What the quotas leave, worked out here from what residents may see at all: per
    merchant and local day, the first n by publication (then id)."""
    shown = store.records.list(now=now, limit=10_000)
    quotas = QUOTAS.quotas(channel)
    days = defaultdict(list)
    for r in shown:
        days[(r.item.merchant_id, r.sort_at.astimezone(ZoneInfo("Europe/Berlin")).date())].append(r)
    kept = {r.id for (merchant, _), rs in days.items()
            for r in sorted(rs, key=lambda r: (r.sort_at, r.id))[:quotas.get(merchant, len(rs))]}
    narrowed = {r.id for r in store.records.list(now=now, limit=10_000, **filters)}
    return sorted(kept & narrowed)


def test_quotas_asked_per_record_agree_with_counts_made_otherwise(store):
    town(store)
    for now in (T0, T0 + timedelta(days=2)):  # the event has ended by then: one fewer in its day
        for filters in ({}, {"kinds": ["post"]}, {"merchants": ["a", "c"]}, {"kinds": ["event"]}):
            expected = within_quotas(store, "platform", now, **filters)
            listed = store.records.list(channel="platform", now=now, limit=10_000, **filters)
            assert sorted(r.id for r in listed) == expected, filters
            assert store.records.count(channel="platform", now=now, **filters) == len(expected), filters
            paged = [r.id for o in range(0, len(expected) + 4, 4)
                     for r in store.records.list(channel="platform", now=now, limit=4, offset=o, **filters)]
            assert paged == [r.id for r in listed]  # pages in the order of the whole listing
    assert store.records.count(channel="other", now=T0) == len(within_quotas(store, "other", T0))
    assert all(r.item.merchant_id != "b" for r in store.records.list(channel="platform", now=T0))  # quota 0


def test_counts_are_remembered_until_something_changes(store):
    town(store)
    statements = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2]) if a[2].lstrip().startswith("SELECT") else None)
    total = store.records.count(now=T0)
    asked = len(statements)
    assert store.records.count(now=T0 + timedelta(minutes=5)) == total
    assert len(statements) == asked + 1  # the data version alone: nothing changed, no expiry passed

    fetch(store, "d", [post(500, "d", hours=1)], at=T0 + timedelta(minutes=2))
    assert store.records.count(now=T0) == total + 1  # a new record
    [newest] = store.records.list(now=T0, limit=1)
    store.records.hide(newest.id, now=T0 + timedelta(minutes=3))
    assert store.records.count(now=T0) == total  # hidden
    assert store.records.count(now=T0 + timedelta(days=2)) == total - 4  # the events ended (a day after the start)
    assert store.records.count(now=T0) == total  # a moment before: counted again, not taken from later
    store.records.configure(moderation.Rules())
    assert store.records.count(channel="platform", now=T0) == total  # no quotas any more
    assert store.records.count(at_most=3, now=T0) == 3
    assert store.records.count(at_most=10_000, now=T0) == total


def test_hot_listings_read_indexes_never_a_whole_table(tmp_path):
    """SQLite's plan of every statement a page runs (the listing, its count, loading the
    records, their images): each looks rows up by an index; none scans a table."""
    store = town(Store(f"sqlite:///{tmp_path / 'hub.db'}"))
    statements = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda conn, cursor, sql, params, context, many: statements.append((sql, params)))
    pages = [dict(channel="platform"), dict(channel="platform", offset=20),
             dict(channel="platform", kinds=["event"], order="event_start", starts_from=T0),
             dict(channel="platform", merchants=["c"]), dict(channel="platform", tags=["advent"]),
             dict(channel="platform", q="Beitrag Text", order="relevance")]
    for page in pages:
        store.records.list(now=T0, limit=20, **page)
        store.records.count(now=T0, **{k: v for k, v in page.items() if k not in ("offset", "order")})
        store.records.marks(now=T0, limit=20, **{k: v for k, v in page.items() if k != "offset"})
    tables = set(inspect(store.engine).get_table_names())
    with store.engine.connect() as conn:
        for sql, params in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, params)]
            scans = [step for step in plan if step.startswith("SCAN ") and step.split()[1] in tables
                     and ":M" not in step]  # the search index looked up by MATCH (FTS5's own index)
            assert not scans, (sql, plan)
    store.close()


def test_fifty_readers_at_once_share_the_connection_pool(store):
    """50 web requests at once: each reader holds one connection at a time (the images of a
    page are looked up on the page's own), so readers beyond the pool wait their turn."""
    store.sync_sources([SourceSpec("a-rss", "a", "rss")])
    fetch(store, "a", [post(n, "a", hours=n, image=True) for n in range(1, 41)])
    expected = [r.id for r in store.records.list(now=T0, limit=20)]
    start, errors, seen = threading.Barrier(50), [], []

    def reader() -> None:
        try:
            start.wait()
            for _ in range(3):
                seen.append([r.id for r in store.records.list(now=T0, limit=20)])
                store.records.count(now=T0, q="Beitrag")
        except Exception as exc:  # noqa: BLE001 - every failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(seen) == 150 and all(ids == expected for ids in seen)
