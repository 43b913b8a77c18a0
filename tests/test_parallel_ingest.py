"""Ingest writers of one town side by side on PostgreSQL (issue 18, hub.store.writelocks):
writers whose items cannot match overlap; writers whose items can match take turns, so the
same thing posted twice at the same moment still becomes one record; revision ids commit in
order, and a record that commits after a newer one still moves the data version; a deadlock is rolled back and tried again."""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

import hub.store.placement as placement_module
from hub.identity import local_day
from hub.models import Event, FetchState, Item, Parsed
from hub.store import FetchOutcome, SourceSpec, Store, writelocks
from hub.store.version import advance, data_version

pytestmark = pytest.mark.postgres

# Days ahead of now, on the hour: no test depends on today's date.
T0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
WAIT = 20  # seconds any thread may take: far more than any write here needs
WORDS = ("apfel birne kirsche pflaume quitte mandel walnuss honig zimt vanille kakao karamell hafer dinkel roggen "
         "kürbis möhre lauch sellerie fenchel spargel bärlauch rhabarber holunder schlehe hagebutte sanddorn "
         "johannisbeere stachelbeere brombeere himbeere heidelbeere preiselbeere mohn sesam leinsamen").split()


@pytest.fixture
def stores(pg_url):
    """Two stores on one town, as two worker processes have: each its own pool."""
    first = Store(pg_url, schema="town_a")
    second = Store(pg_url, schema="town_a", migrate=False)
    yield first, second
    first.close()
    second.close()


def fetched(source: str, *items: Item, at: datetime = T0) -> FetchOutcome:
    return FetchOutcome(source, at, "ok", parsed=Parsed(items), state=FetchState())


def event(source: str, ext: str, merchant: str, title: str, day: int, *, url: str | None = None,
          html: str = "") -> Item:
    return Item(source, ext, merchant, title=title, content_html=html or f"<p>{title}</p>", content_text=title,
                url=url, published=T0 - timedelta(days=1),
                event=Event(start=T0 + timedelta(days=day, hours=10), location="Stadthalle am Markt"))


def post(source: str, ext: str, merchant: str, words: list[str], *, tag: str = "") -> Item:
    body = f"Frisch bei uns: {' '.join(words)}, nur diese Woche im Laden. {tag}".strip()
    return Item(source, ext, merchant, title=" ".join(words[:3]).title(), content_html=f"<p>{body}</p>",
                content_text=body, published=T0 - timedelta(hours=2))


def records_of(store: Store, *keys: tuple[str, str]) -> set[int]:
    """The records the items with these (source, external id) are origins of."""
    with store.engine.connect() as conn:
        return {r for r, in conn.execute(text(
            "SELECT o.record_id FROM record_origins o JOIN items i ON i.id = o.item_id "
            "WHERE (i.source_id, i.external_id) IN (SELECT * FROM unnest(CAST(:sources AS text[]), CAST(:externals AS text[])))"),
            {"sources": [s for s, _ in keys], "externals": [e for _, e in keys]})}


def run(target, *args) -> tuple[threading.Thread, dict]:
    """`target(*args)` in a thread; its result or exception lands in the dict."""
    out: dict = {}

    def body():
        try:
            out["result"] = target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, out


def finish(thread: threading.Thread, out: dict):
    thread.join(WAIT)
    assert not thread.is_alive(), "a writer did not finish"
    if "error" in out:
        raise out["error"]
    return out["result"]


def race(writes: list) -> list:
    """Start every `write()` at once (a barrier), many times over; their results."""
    barrier = threading.Barrier(len(writes))

    def released(write):
        barrier.wait(WAIT)
        return write()

    started = [run(released, w) for w in writes]
    return [finish(*s) for s in started]


def paused(store: Store) -> tuple[threading.Event, threading.Event]:
    """Make `store`'s next write stop inside its transaction, after its items are written
    and before it places them (its locks held, the town's turn not taken): `inside` is set
    there, and it goes on once `go` is set."""
    inside, go = threading.Event(), threading.Event()
    after_upsert = store.records.after_upsert

    def waiting(*args, **kwargs):
        inside.set()
        assert go.wait(WAIT)
        return after_upsert(*args, **kwargs)

    store.records.after_upsert = waiting
    return inside, go


def test_writers_of_merchants_whose_items_cannot_match_overlap(stores):
    first, second = stores
    first.sync_sources([SourceSpec("baecker-web", "baecker", "feed"), SourceSpec("metzger-web", "metzger", "feed")])
    inside, go = paused(first)
    a = run(first.apply, [fetched("baecker-web", post("baecker-web", "b1", "baecker", WORDS[:8]))])
    assert inside.wait(WAIT)
    # With one lock per town for the whole transaction, this waited for the first writer.
    b = run(second.apply, [fetched("metzger-web", post("metzger-web", "m1", "metzger", WORDS[8:16]))])
    [result] = finish(*b)
    assert result.new == ["m1"] and records_of(second, ("metzger-web", "m1"))
    assert a[0].is_alive()  # the first writer still holds its transaction open
    go.set()
    [result] = finish(*a)
    assert result.new == ["b1"]
    assert len(records_of(first, ("baecker-web", "b1"), ("metzger-web", "m1"))) == 2


def test_two_merchants_posting_the_same_event_at_once_make_one_record(stores):
    first, second = stores
    first.sync_sources([SourceSpec("verein-ical", "verein", "ical"), SourceSpec("stadt-ical", "stadt", "ical")])
    # A fresh event each round, on a day of its own; each payload is complete, so the last
    # round's event is gone from it (a tombstone: its stored scopes are locked as well).
    for n in range(20):
        title = f"Adventskonzert des Musikvereins {WORDS[n]}"
        plans = [first.plan([fetched("verein-ical", event("verein-ical", f"v{n}", "verein", title, n))]),
                 second.plan([fetched("stadt-ical", event("stadt-ical", f"s{n}", "stadt", title, n))])]
        race([lambda: first.write(plans[0]), lambda: second.write(plans[1])])
        assert len(records_of(first, ("verein-ical", f"v{n}"), ("stadt-ical", f"s{n}"))) == 1, f"round {n}"


def test_two_sources_of_a_merchant_posting_the_same_post_at_once_make_one_record(stores):
    first, second = stores
    first.sync_sources([SourceSpec("laden-web", "laden", "feed"), SourceSpec("laden-fb", "laden", "feed")])
    pick = random.Random(18)
    for n in range(10):
        words = pick.sample(WORDS, 10)  # a text of its own each round: rounds never match each other
        plans = [first.plan([fetched("laden-web", post("laden-web", f"w{n}", "laden", words))]),
                 second.plan([fetched("laden-fb", post("laden-fb", f"f{n}", "laden", words, tag="#frisch"))])]
        race([lambda: first.write(plans[0]), lambda: second.write(plans[1])])
        assert len(records_of(first, ("laden-web", f"w{n}"), ("laden-fb", f"f{n}"))) == 1, f"round {n}"


def test_an_event_linking_to_another_merchants_event_posted_at_once_joins_its_record(stores):
    first, second = stores
    first.sync_sources([SourceSpec("verein-ical", "verein", "ical"), SourceSpec("kirche-ical", "kirche", "ical")])
    for n in range(10):
        url = f"https://verein.example/termine/{n}"
        own = event("verein-ical", f"v{n}", "verein", f"Weihnachtsmarkt {WORDS[n]}", n, url=url)
        linking = event("kirche-ical", f"k{n}", "kirche", f"Krippenspiel {WORDS[n + 20]}", n,
                        html=f'<p>Wir sind dabei: <a href="{url}">beim Verein</a></p>')
        plans = [first.plan([fetched("verein-ical", own)]), second.plan([fetched("kirche-ical", linking)])]
        race([lambda: first.write(plans[0]), lambda: second.write(plans[1])])
        assert len(records_of(first, ("verein-ical", f"v{n}"), ("kirche-ical", f"k{n}"))) == 1, f"round {n}"


def _paused_at_the_turn(monkeypatch, before: bool):
    """Make `Placement.write_revisions` of the thread `holder["thread"]` stop before or right
    after it took the town's turn (`version.advance`), until `go` is set."""
    inside, go, holder = threading.Event(), threading.Event(), {}
    advance = placement_module.advance

    def paused(conn):
        mine = threading.current_thread() is holder.get("thread")
        if mine and before:
            inside.set()
            assert go.wait(WAIT)
        advance(conn)
        if mine and not before:
            inside.set()
            assert go.wait(WAIT)

    monkeypatch.setattr(placement_module, "advance", paused)
    return inside, go, holder


def test_revision_ids_commit_in_order_so_no_reader_of_the_change_feed_skips_one(stores, monkeypatch):
    first, second = stores
    first.sync_sources([SourceSpec("baecker-web", "baecker", "feed"), SourceSpec("metzger-web", "metzger", "feed")])
    first.apply([fetched("baecker-web", post("baecker-web", "b0", "baecker", WORDS[:8]))])
    first.apply([fetched("metzger-web", post("metzger-web", "m0", "metzger", WORDS[8:16]))])
    inside, go, holder = _paused_at_the_turn(monkeypatch, before=False)  # the first writer holds the turn
    changed = post("baecker-web", "b0", "baecker", WORDS[:8] + ["neu"])  # an update: a revision
    a = run(first.apply, [fetched("baecker-web", changed, post("baecker-web", "b1", "baecker", WORDS[16:24]))])
    holder["thread"] = a[0]
    assert inside.wait(WAIT)
    version = data_version(first.engine)
    after = version[1]  # where a reader of the change feed stands
    b = run(second.apply, [fetched("metzger-web", post("metzger-web", "m0", "metzger", WORDS[8:16] + ["neu"]),
                                   post("metzger-web", "m1", "metzger", WORDS[24:32]))])
    b[0].join(1.0)
    assert b[0].is_alive()  # it waits for its turn: its revision ids come after the first writer's
    assert data_version(first.engine) == version  # nothing committed in between
    go.set()
    finish(*a)
    finish(*b)
    feed = first.records.changes(after)  # a reader that followed the feed misses nothing
    [edited_first], [edited_second] = records_of(first, ("baecker-web", "b0")), records_of(first, ("metzger-web", "m0"))
    order = [r.record_id for r in feed]
    assert set(order) == {edited_first, edited_second}
    assert order == sorted(order, key=lambda record: record == edited_second)  # in commit order
    assert data_version(first.engine) == (version[0] + 2, feed[-1].id)


def test_a_record_that_commits_after_a_newer_one_still_moves_the_data_version(stores, monkeypatch):
    """Record ids are taken before the turn, so a writer's record can commit after a record
    with a higher id: the cache's version must move all the same."""
    first, second = stores
    first.sync_sources([SourceSpec("baecker-web", "baecker", "feed"), SourceSpec("metzger-web", "metzger", "feed")])
    inside, go, holder = _paused_at_the_turn(monkeypatch, before=True)  # records written, no turn yet
    a = run(first.apply, [fetched("baecker-web", post("baecker-web", "b1", "baecker", WORDS[:8]))])
    holder["thread"] = a[0]
    assert inside.wait(WAIT)
    second.apply([fetched("metzger-web", post("metzger-web", "m1", "metzger", WORDS[8:16]))])  # overtakes it
    seen = data_version(first.engine)  # what a page cached now is keyed by
    go.set()
    finish(*a)
    [mine], [theirs] = records_of(first, ("baecker-web", "b1")), records_of(first, ("metzger-web", "m1"))
    assert mine < theirs  # the older id committed last
    assert data_version(first.engine) != seen
    assert first.records.count(merchant_id="baecker") == 1


def test_a_deadlock_is_rolled_back_and_the_write_tried_again(stores, caplog):
    first, _ = stores
    first.sync_sources([SourceSpec("verein-ical", "verein", "ical")])
    item = event("verein-ical", "v1", "verein", "Laternenumzug", 1)
    plan = first.plan([fetched("verein-ical", item)])
    lock = SimpleNamespace(town="town_a")
    merchant = writelocks.WriteLocks._id(lock, "merchant", "verein")
    day = writelocks.WriteLocks._id(lock, "day", local_day(item.event.start, first.records.rules.timezone))
    other = create_engine(first.url)  # a transaction that takes the same locks in the other order
    with other.connect() as conn:
        conn.exec_driver_sql("SET deadlock_timeout = '10s'")  # the writer's check (1 s) breaks the cycle
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({day})")
        with caplog.at_level(logging.WARNING, logger="hub.store"):
            writer = run(first.write, plan)  # takes its merchant's lock, then waits for the day's
            _wait_for_a_lock_wait(other)
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({merchant})")  # the cycle: the writer is rolled back
            conn.commit()  # the other transaction ends; the writer's second attempt goes through
            [result] = finish(*writer)
    other.dispose()
    assert result.new == ["v1"] and len(records_of(first, ("verein-ical", "v1"))) == 1
    [line] = [r for r in caplog.records if "trying again" in r.getMessage()]
    assert "DeadlockDetected" in line.getMessage() and line.exc_info is None


def _wait_for_a_lock_wait(engine, kind: str = "advisory") -> None:
    """Until some session waits for a lock of this kind (pg_locks.locktype)."""
    deadline = time.monotonic() + WAIT
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.exec_driver_sql("SELECT count(*) FROM pg_locks WHERE locktype = %s AND NOT granted",
                                           (kind,)).scalar_one()
            if waiting:
                return
            conn.rollback()
            time.sleep(0.02)
    raise AssertionError(f"nobody waited for a lock ({kind})")


def test_the_retry_wrapper_tries_a_deadlocked_write_again_and_gives_up_on_other_errors(caplog):
    calls = []

    def deadlocked_once():
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT 1", {}, psycopg.errors.DeadlockDetected("deadlock detected"))
        return "written"

    with caplog.at_level(logging.WARNING, logger="hub.store"):
        assert writelocks.retrying(deadlocked_once, "ingest write of x", pause=0) == "written"
    assert len(calls) == 2 and len(caplog.records) == 1 and caplog.records[0].exc_info is None

    def broken():
        raise OperationalError("SELECT 1", {}, psycopg.errors.UniqueViolation("duplicate key"))

    with pytest.raises(OperationalError):
        writelocks.retrying(broken, "ingest write of x", pause=0)

    def always():
        raise OperationalError("SELECT 1", {}, psycopg.errors.SerializationFailure("could not serialize"))

    with pytest.raises(OperationalError):
        writelocks.retrying(always, "ingest write of x", attempts=3, pause=0)


def test_a_batch_with_many_days_locks_them_all_at_once_and_still_takes_turns(stores, monkeypatch):
    first, second = stores
    monkeypatch.setattr(writelocks, "MOST_LOCKS", 1)  # two days are many: the exclusive lock-all
    first.sync_sources([SourceSpec("verein-ical", "verein", "ical"), SourceSpec("stadt-ical", "stadt", "ical")])
    for n in range(5):
        title = f"Adventskonzert des Musikvereins {WORDS[n]}"
        many = [event("verein-ical", f"v{n}", "verein", title, n), event("verein-ical", f"x{n}", "verein",
                                                                         f"Probe {WORDS[n + 30]}", n + 10)]
        plans = [first.plan([fetched("verein-ical", *many)]),
                 second.plan([fetched("stadt-ical", event("stadt-ical", f"s{n}", "stadt", title, n))])]
        race([lambda: first.write(plans[0]), lambda: second.write(plans[1])])
        assert len(records_of(first, ("verein-ical", f"v{n}"), ("stadt-ical", f"s{n}"))) == 1, f"round {n}"


def test_a_batch_with_more_items_than_one_lock_set_is_written_in_parts_of_whole_sources(stores, monkeypatch):
    """Beyond MOST_LOCKS URLs a write would lock every URL of the town and write alone: a
    worker's big shared batch is written in parts instead, each source whole."""
    first, _ = stores
    monkeypatch.setattr(writelocks, "MOST_LOCKS", 3)
    taken, take_each = [], writelocks.WriteLocks._take_each

    def recording(self, *scopes):
        taken.append({kind: len(values) for kind, values in scopes})
        return take_each(self, *scopes)

    monkeypatch.setattr(writelocks.WriteLocks, "_take_each", recording)
    first.sync_sources([SourceSpec(f"verein{n}-ical", f"verein{n}", "ical") for n in range(3)])
    outcomes = [fetched(f"verein{n}-ical", *(event(f"verein{n}-ical", f"e{k}", f"verein{n}", f"Probe {WORDS[3 * n + k]}",
                                                   k, url=f"https://verein{n}.example/{k}") for k in range(2)))
                for n in range(3)]
    results = first.write(first.plan(outcomes))
    assert sorted((r.source_id, sorted(r.new)) for r in results) == [(f"verein{n}-ical", ["e0", "e1"]) for n in range(3)]
    assert taken == [{"day": 2, "url": 2}] * 3  # three transactions, none over the limit
    assert len(records_of(first, *((f"verein{n}-ical", f"e{k}") for n in range(3) for k in range(2)))) == 6


def test_the_project_managers_actions_take_the_towns_turn_like_ingest(stores):
    """Hiding a record writes a revision: it waits while another writer holds the town's turn
    (as an ingest does from its revisions to COMMIT), so revision ids commit in order."""
    first, second = stores
    first.sync_sources([SourceSpec("laden", "baecker", "rss", "f")])
    first.apply([fetched("laden", post("laden", "p1", "baecker", WORDS[:6]))])
    record = next(iter(records_of(first, ("laden", "p1"))))
    with first.engine.connect() as holder:
        advance(holder)  # a writer's turn
        hiding, out = run(second.records.hide, record)
        _wait_for_a_lock_wait(second.engine, "transactionid")
        assert hiding.is_alive() and not out  # waits for the turn
        holder.rollback()  # the other writer commits
    assert finish(hiding, out) is True
