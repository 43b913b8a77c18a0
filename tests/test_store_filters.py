"""The store's side of filtered pages and feeds (issue 14), on SQLite and PostgreSQL: tags
by index, merchants, kinds and event windows combined; quotas before filters; what a feed's
ETag, Last-Modified and a calendar's SEQUENCE are made of."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import func, select

from hub import moderation
from hub.models import Event, FetchState, Item, Kind, Parsed
from hub.store import MIGRATIONS, FetchOutcome, SourceSpec, Store, tables
from hub.store.placement import RECORDS
from hub.store.records import _ORDER
from hub.store.scheduling import ScheduleStore

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # fixed: everything is judged with now=


def post(n: int, merchant: str = "laden", *, tags=(), kind: Kind = Kind.POST, age: int | None = None,
         title: str | None = None, start: datetime | None = None) -> Item:
    """A distinct item (nothing alike: one record each)."""
    words = ("Brot", "Konzert", "Lesung", "Flohmarkt", "Schuhe", "Kuchen", "Turnier", "Vortrag")
    event = Event(start=start, timezone="Europe/Berlin") if start else None
    return Item(source_id=f"{merchant}-rss", external_id=f"e{n}", merchant_id=merchant,
                title=title or f"{words[n % len(words)]} Nummer {n} bei {merchant}", content_html=f"<p>Text {n}</p>",
                content_text=f"Ganz eigener Text {n} {merchant}", url=f"https://{merchant}.example/{n}",
                published=T0 - timedelta(hours=age if age is not None else n), tags=tuple(tags),
                kind=Kind.EVENT if start else kind, event=event)


def fetch(store: Store, merchant: str, items, *, at=T0, complete=True, gone=()) -> None:
    store.apply([FetchOutcome(f"{merchant}-rss", at, "ok", parsed=Parsed(tuple(items), complete=complete, gone=gone),
                              state=FetchState())])


def ready(store: Store) -> Store:
    store.sync_sources([SourceSpec(f"{m}-rss", m, "rss") for m in ("laden", "verein", "rathaus")])
    return store


def titles(store: Store, **filters) -> list[str]:
    return [r.item.title for r in store.records.list(now=T0, limit=100, **filters)]


def test_tags_are_looked_up_folded_through_live_origins(store):
    ready(store)
    fetch(store, "laden", [post(1, tags=("Advent", "Angebot")), post(2, tags=("#advent",)), post(3, tags=("Brot",))])
    fetch(store, "verein", [post(4, "verein", tags=("ADVENT ",))])
    assert len(titles(store, tags=["advent"])) == 3
    assert titles(store, tags=["Advent"]) == titles(store, tags=["#ADVENT"])
    assert len(titles(store, tags=["brot", "angebot"])) == 2  # OR within the key
    assert titles(store, tags=["weihnachten"]) == []  # unknown: nothing, not everything
    assert titles(store, tags=[]) == []

    fetch(store, "laden", [post(1, tags=("Angebot",)), post(2, tags=("#advent",)), post(3, tags=("Brot",))],
          at=T0 + timedelta(hours=1))  # an edit drops the tag
    assert len(titles(store, tags=["advent"])) == 2
    fetch(store, "laden", [], complete=False, gone=("e2",), at=T0 + timedelta(hours=2))  # deleted at the source
    assert [t for t in titles(store, tags=["advent"])] == [post(4, "verein").title]



def test_filters_are_index_look_ups(tmp_path):
    """SQLite's plan for a filtered listing: tags, merchants and event starts by index,
    never a scan of items, origins or tags (PostgreSQL's planner picks by table size)."""
    store = ready(Store(f"sqlite:///{tmp_path / 'hub.db'}"))
    fetch(store, "laden", [post(1, tags=("Advent",)), post(2, start=T0 + timedelta(days=2))])
    cases = [({"tags": ["advent"], "merchants": ["laden"], "kinds": ["post"]}, "newest", "ix_item_tags_tag"),
             ({"merchants": ["laden"]}, "newest", "ix_record_origins_merchant"),
             ({"kinds": ["event"], "starts_from": T0}, "event_start", "ix_records_events")]
    for filters, order, index in cases:
        query = (select(RECORDS.c.id).where(*store.records._conditions(now=T0, **filters))
                 .order_by(*_ORDER[order]).limit(50))
        sql = str(query.compile(store.engine, compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            plan = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
        assert any(index in step for step in plan), plan
        assert not any(step.startswith("SCAN") for step in plan), plan
    store.close()


def test_filters_combine_across_keys_and_or_within(store):
    ready(store)
    later = T0 + timedelta(days=10)
    fetch(store, "laden", [post(1, tags=("Advent",)), post(2, kind=Kind.OFFER, tags=("Advent",)),
                           post(3, start=later, tags=("Musik",))])
    fetch(store, "verein", [post(4, "verein", start=later + timedelta(days=1), tags=("Advent",)),
                            post(5, "verein")])
    assert len(titles(store)) == 5
    assert len(titles(store, merchants=["laden", "verein"])) == 5
    assert titles(store, merchants=["laden"], kinds=["event"]) == [post(3).title]
    assert titles(store, merchants=["verein"], tags=["advent"]) == [post(4, "verein").title]
    assert len(titles(store, kinds=["event", "offer"], tags=["advent"])) == 2
    assert titles(store, merchants=["niemand"]) == [] and titles(store, merchants=[]) == []
    assert titles(store, kinds=[]) == []
    upcoming = titles(store, kinds=["event"], order="event_start", starts_from=later - timedelta(hours=1))
    assert upcoming == [post(3).title, post(4, "verein").title]  # by start, not by publication
    assert titles(store, kinds=["event"], starts_from=later + timedelta(hours=1)) == [post(4, "verein").title]
    assert titles(store, kinds=["event"], starts_until=later + timedelta(hours=1)) == [post(3).title]
    assert store.records.count(now=T0, merchants=["laden"], tags=["advent"]) == 2


def test_a_quota_hides_the_same_posts_on_filtered_views(store):
    """Three posts a day for the shop: the fourth stays hidden on `/?tag=x` too, even if it
    is the only one with that tag (quotas count what residents may see at all)."""
    ready(store)
    store.records.configure(moderation.Rules({"laden": moderation.MerchantRules(quota={"platform": 3})}))
    same_day = [post(n, age=10 - n, tags=("Brot",) if n == 4 else ()) for n in range(1, 5)]
    fetch(store, "laden", same_day)
    shown = titles(store, channel="platform")
    assert len(shown) == 3 and post(4).title not in shown
    assert titles(store, channel="platform", tags=["brot"]) == []


def test_marks_and_edits_follow_every_change(store):
    ready(store)
    fetch(store, "laden", [post(1), post(2), post(3, start=T0 + timedelta(days=3))])
    marks = store.records.marks(now=T0)
    assert [i for i, _ in marks] == [r.id for r in store.records.list(now=T0)]
    [event] = store.records.list(now=T0, kinds=["event"])
    assert store.records.edits([event.id]) == {}  # never edited

    edited = post(3, start=T0 + timedelta(days=3, hours=1))  # the time moved
    fetch(store, "laden", [post(1), post(2), edited], at=T0 + timedelta(minutes=5))
    assert store.records.marks(now=T0) != marks
    assert store.records.edits([event.id]) == {event.id: 1}
    marks = store.records.marks(now=T0)

    fetch(store, "laden", [], complete=False, gone=("e2",), at=T0 + timedelta(minutes=10))  # removed
    assert [i for i, _ in store.records.marks(now=T0)] == [i for i, _ in marks if i != marks[1][0]]
    # the event expires a day after it started (the default rules): it leaves, with no write
    assert len(store.records.marks(now=T0 + timedelta(days=4, hours=2))) == 1


def test_tags_of_existing_items_are_copied_by_the_migration_and_forgotten_with_them(store):
    ready(store)
    fetch(store, "laden", [post(1, tags=("Advent", "#Brot")), post(2, tags=("Advent",))])
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008")  # as if the items had been stored before 0009
    store.migrate()
    assert len(titles(store, tags=["advent"])) == 2 and len(titles(store, tags=["brot"])) == 1

    fetch(store, "laden", [post(2, tags=("Advent",))], complete=False, gone=("e1",), at=T0 + timedelta(days=1))
    ScheduleStore(store).forget_deleted(T0 + timedelta(days=30))
    with store.engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(tables.ItemTagRow)).scalar_one()
    assert left == 1  # e1's two tags went with it
