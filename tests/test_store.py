"""The store decides what is new, changed and gone; on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import func, select

from hub.models import Event, FetchState, Item, Kind, Media, Parsed
from hub.store import MIGRATIONS, FetchOutcome, SourceSpec, Store, tables
from hub.store.mediadb import StoredImage
from hub.store.scheduling import ScheduleStore

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def entry(n: int, *, title: str | None = None, day: int | None = None, source: str = "laden-rss") -> Item:
    published = T0 - timedelta(days=day if day is not None else n)
    return Item(source_id=source, external_id=f"e{n}", merchant_id="laden", title=title or f"Beitrag {n}",
                summary=f"Text {n}", content_html=f"<p>Text {n}</p>", content_text=f"Text {n}",
                url=f"https://laden.example/{n}", published=published, tags=("Angebot",),
                media=(Media(url=f"https://laden.example/{n}.jpg", width=800, height=600),))


def fetched(items, *, source="laden-rss", at=T0, complete=True, state=FetchState('"v1"', None)) -> FetchOutcome:
    return FetchOutcome(source, at, "ok", parsed=Parsed(tuple(items), complete=complete), state=state)


def prepared(store: Store) -> Store:
    store.sync_sources([SourceSpec("laden-rss", "laden", "rss"), SourceSpec("verein-rss", "verein", "rss")])
    return store


def test_first_fetch_is_new_and_the_second_adds_nothing(store):
    prepared(store)
    [first] = store.apply([fetched([entry(1), entry(2), entry(3)])])
    assert sorted(first.new) == ["e1", "e2", "e3"]
    [second] = store.apply([fetched([entry(1), entry(2), entry(3)])])
    assert (second.new, second.changed, second.gone, second.unchanged) == ([], [], [], 3)
    assert store.count_items() == 3


def test_an_edit_updates_the_item_in_place(store):
    prepared(store)
    store.apply([fetched([entry(1), entry(2)])])
    before = {s.item.external_id: s.id for s in store.items()}
    [result] = store.apply([fetched([entry(1, title="Beitrag 1 (korrigiert)"), entry(2)])])
    assert result.changed == ["e1"] and result.new == []
    after = {s.item.external_id: s for s in store.items()}
    assert after["e1"].id == before["e1"]
    assert after["e1"].item.title == "Beitrag 1 (korrigiert)"
    assert store.count_items() == 2


def test_deleted_from_the_middle_is_gone_but_sliding_out_of_the_window_is_not(store):
    prepared(store)
    store.apply([fetched([entry(n) for n in range(1, 6)])])  # e1 newest ... e5 oldest
    # e3 deleted by the merchant; e5 slid out of the end of the window.
    [result] = store.apply([fetched([entry(1), entry(2), entry(4)])])
    assert result.gone == ["e3"]
    visible = {s.item.external_id for s in store.items()}
    assert visible == {"e1", "e2", "e4", "e5"}
    deleted = [s for s in store.items(include_deleted=True) if s.deleted_at]
    assert [s.item.external_id for s in deleted] == ["e3"]


def test_a_tombstone_keeps_a_stale_copy_from_resurrecting_the_item(store):
    prepared(store)
    store.apply([fetched([entry(1), entry(2), entry(3)])])
    store.apply([fetched([entry(1), entry(3)])])  # e2 deleted
    [stale] = store.apply([fetched([entry(1), entry(2), entry(3)])])  # an old cached copy
    assert stale.new == [] and stale.changed == []
    assert "e2" not in {s.item.external_id for s in store.items()}
    [edited] = store.apply([fetched([entry(1), entry(2, title="Wieder da, neu"), entry(3)])])
    assert edited.changed == ["e2"]
    assert "e2" in {s.item.external_id for s in store.items()}


def test_an_empty_or_undated_feed_deletes_nothing(store):
    prepared(store)
    store.apply([fetched([entry(1), entry(2)])])
    [empty] = store.apply([fetched([])])
    assert empty.gone == []
    undated = Item(source_id="laden-rss", external_id="x", merchant_id="laden", title="ohne Datum")
    [result] = store.apply([fetched([undated])])
    assert result.gone == [] and store.count_items() == 3


def test_partial_payloads_never_delete(store):
    prepared(store)
    store.apply([fetched([entry(1), entry(2), entry(3)])])
    [result] = store.apply([fetched([entry(1), entry(3)], complete=False)])
    assert result.gone == [] and store.count_items() == 3


def test_sources_are_independent_and_a_batch_is_one_transaction(store):
    prepared(store)
    results = store.apply([fetched([entry(1)]), fetched([entry(1, source="verein-rss")], source="verein-rss")])
    assert [r.new for r in results] == [["e1"], ["e1"]]
    assert store.count_items() == 2
    assert store.count_items(merchant_id="laden") == 2  # both items carry merchant "laden" here


def test_item_round_trip_keeps_every_field(store):
    prepared(store)
    original = entry(7)
    store.apply([fetched([original])])
    [stored] = store.items()
    assert stored.item == original
    assert stored.item.content_hash == original.content_hash


def test_fetch_state_and_health_are_recorded(store):
    prepared(store)
    store.apply([fetched([entry(1)], state=FetchState('"abc"', "Sat, 21 Nov 2026 10:00:00 GMT"))])
    assert store.fetch_states(["laden-rss"])["laden-rss"] == FetchState('"abc"', "Sat, 21 Nov 2026 10:00:00 GMT")
    failure = FetchOutcome("laden-rss", T0, "failed", error="HTTP 404", error_code="fetch_failed")
    store.apply([failure])
    store.apply([failure])
    status = {s.id: s for s in store.source_statuses()}["laden-rss"]
    assert (status.status, status.error_count, status.last_error, status.items) == ("failing", 2, "HTTP 404", 1)
    # a failure keeps the caching state, so the next success is still a conditional GET
    assert store.fetch_states(["laden-rss"])["laden-rss"].etag == '"abc"'
    store.apply([FetchOutcome("laden-rss", T0, "not_modified")])
    status = {s.id: s for s in store.source_statuses()}["laden-rss"]
    assert (status.status, status.error_count, status.last_error) == ("ok", 0, None)


def test_search_matches_every_word(store):
    prepared(store)
    store.apply([fetched([entry(1, title="Frische Brötchen am Samstag"), entry(2, title="Stollen")])])
    assert [s.item.title for s in store.items(q="brötchen samstag")] == ["Frische Brötchen am Samstag"]
    assert store.items(q="brötchen sonntag") == []


def test_migrations_are_idempotent(store):
    store.migrate()
    Store(store.url).close()


def test_datetimes_are_stored_as_utc_and_offsets_of_older_versions_are_repaired(tmp_path):
    """Placement once wrote datetimes with their UTC offset ("+01:00") where the rest of the
    store keeps plain UTC; migration 0004 rewrites such values."""
    store = prepared(Store(f"sqlite:///{tmp_path / 'hub.db'}"))
    concert = entry(1, title="Konzert").evolve(
        event=Event(start=datetime(2026, 12, 5, 16, 0, tzinfo=ZoneInfo("Europe/Berlin")), timezone="Europe/Berlin"))
    store.apply([fetched([concert])])
    raw = "SELECT event_start, sort_at FROM records"
    with store.engine.begin() as conn:
        assert conn.exec_driver_sql(raw).one() == ("2026-12-05 15:00:00.000000", "2026-11-21 12:00:00.000000")
        conn.exec_driver_sql("UPDATE records SET event_start = '2026-12-05 16:00:00+01:00', "
                             "sort_at = '2026-11-21 12:00:00+00:00'")
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003")  # as a database written before 0004
    store.migrate()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql(raw).one() == ("2026-12-05 15:00:00.000000", "2026-11-21 12:00:00.000000")
    store.close()


def test_image_outcomes_are_saved_in_one_go_and_the_last_one_wins(store):
    prepared(store).apply([fetched([entry(1), entry(2)])])
    index = store.records.media
    assert index.count_pending() == 2
    ids = [item_id for item_id, _ in index.pending(10)]
    first, second = "https://laden.example/1.jpg", "https://laden.example/2.jpg"
    index.save([StoredImage(first, None, None, None, None, "HTTP 503"), StoredImage(second, "b" * 64, 800, 600, "image/jpeg")],
               T0, done=ids)
    assert index.count_pending() == 0
    index.save([StoredImage(first, "a" * 64, 800, 600, "image/jpeg")], T0 + timedelta(hours=1))  # the on-demand route
    known = index.lookup([first, second])
    assert (known[first].sha256, known[first].error) == ("a" * 64, None)
    assert (known[second].sha256, known[second].width) == ("b" * 64, 800)


def test_retention_forgets_long_deleted_items_with_everything_that_points_at_them(store):
    """An item deleted at its source is kept as a tombstone for `schedule.retention`, then
    forgotten with its origin, identity keys and deliveries; a record left with no origin
    at all goes too. What is still live, or deleted more recently, stays untouched."""
    def event(n: int) -> Item:  # an event has identity keys (its day and title words)
        # upcoming throughout the test's time line, which ends at T0 + 60 days
        start = (T0 + timedelta(days=90 + n)).astimezone(ZoneInfo("Europe/Berlin")).replace(hour=16)
        return entry(n).evolve(kind=Kind.EVENT, event=Event(start=start, timezone="Europe/Berlin"))

    prepared(store).apply([fetched([event(1), event(2), event(3)])])
    store.apply([fetched([event(1), event(3)], at=T0 + timedelta(days=1))])  # e2 deleted at the source
    store.apply([fetched([event(3)], at=T0 + timedelta(days=50))])  # e1 deleted later

    def counts() -> dict[str, int]:
        with store.engine.connect() as conn:
            return {t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar_one()
                    for t in (tables.ItemRow, tables.RecordOriginRow, tables.RecordRow)}

    assert counts() == {"items": 3, "record_origins": 3, "records": 3}

    plans = ScheduleStore(store)
    assert plans.forget_deleted(T0 + timedelta(days=30)) == 1  # e2 only: e1's tombstone is younger
    assert counts() == {"items": 2, "record_origins": 2, "records": 2}
    with store.engine.connect() as conn:
        item_ids = set(conn.execute(select(tables.ItemRow.id)).scalars())
        keyed = set(conn.execute(select(tables.IdentityKeyRow.item_id)).scalars())
    assert keyed and keyed <= item_ids  # no identity key points at a forgotten item
    assert plans.forget_deleted(T0 + timedelta(days=30)) == 0  # idempotent
    listed = store.records.list(now=T0 + timedelta(days=30))
    assert [r.item.external_id for r in listed] == ["e3"]  # e1 stays deleted, e3 live
    [again] = store.apply([fetched([event(2), event(3)], at=T0 + timedelta(days=60))])
    assert again.new == ["e2"]  # forgotten means forgotten: if it comes back, it is new


def test_syncing_sources_waits_for_another_processs_write_instead_of_failing(tmp_path):
    """A transaction that read before another process's write committed cannot write on
    SQLite ("database is locked", whatever the busy timeout): syncing sources (as `hub towns
    reload` does while `hub run` ingests) takes the write lock before it reads."""
    import sqlite3
    import threading

    path = tmp_path / "hub.db"
    store = Store(f"sqlite:///{path}")
    store.sync_sources([SourceSpec("a", "m", "rss")])
    other = sqlite3.connect(path, isolation_level=None)  # another process: its own connection
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE sources SET error_count = 1 WHERE id = 'a'")
    failed = []

    def sync() -> None:
        try:
            store.sync_sources([SourceSpec("a", "m", "rss"), SourceSpec("b", "m", "rss")])
        except Exception as exc:  # noqa: BLE001 - the test asserts there is none
            failed.append(exc)

    syncing = threading.Thread(target=sync)
    syncing.start()
    syncing.join(0.5)  # it reads, or waits to
    other.execute("COMMIT")  # the other write lands in between
    syncing.join(10)
    other.close()
    assert failed == []
    with store.engine.connect() as conn:
        assert sorted(conn.execute(select(tables.SourceRow.__table__.c.id)).scalars()) == ["a", "b"]
    store.close()

