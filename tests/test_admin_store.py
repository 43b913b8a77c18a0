"""The cockpit's side of the store (issue 17, migration 0013) on SQLite and PostgreSQL: the
trigger that counts every fetch, the counters' upsert, sessions kept as hashes, the audit
log, and the project manager's actions on records (hide with a reason, edit, merge by hand),
each with a revision."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hub.models import Item, Media, Parsed
from hub.store import FetchOutcome, SourceSpec
from hub.store.admin import AdminStore
from hub.store.stats import StatsStore

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


def entry(n: int, source: str = "laden-rss", merchant: str = "laden") -> Item:
    return Item(source_id=source, external_id=f"e{n}", merchant_id=merchant, title=f"Beitrag {n}",
                summary=f"Text {n}", content_html=f"<p>Text {n}</p>", content_text=f"Text {n}",
                url=f"https://{merchant}.example/{n}", published=T0 - timedelta(hours=n),
                media=(Media(url=f"https://{merchant}.example/{n}a.jpg", width=800, height=600),
                       Media(url=f"https://{merchant}.example/{n}b.jpg", width=400, height=300)))


def ingested(store):
    store.sync_sources([SourceSpec("laden-rss", "laden", "rss"), SourceSpec("verein-ical", "verein", "ical")])
    store.apply([FetchOutcome("laden-rss", T0, "ok", parsed=Parsed((entry(1), entry(2)), complete=True)),
                 FetchOutcome("verein-ical", T0, "failed", error="HTTP 404 Not Found", error_code="fetch_failed")])
    return store


def record_of(store, title: str) -> int:
    return next(r.id for r in store.records.list(status=None, limit=50) if r.item.title == title)


def test_every_fetch_is_counted_by_the_store(store):
    ingested(store)
    store.apply([FetchOutcome("laden-rss", T0 + timedelta(hours=1), "not_modified"),
                 FetchOutcome("verein-ical", T0 + timedelta(days=1), "failed", error="x", error_code="fetch_failed")])
    stats = StatsStore(store)
    assert stats.fetch_days(date(2026, 11, 22), date(2026, 11, 22)) == {"laden-rss": (2, 0), "verein-ical": (1, 1)}
    assert stats.fetch_days(date(2026, 11, 23), date(2026, 11, 30)) == {"verein-ical": (1, 1)}
    assert stats.fetch_totals() == {"rss": (2, 0), "ical": (2, 2)}
    assert stats.error_codes()["verein-ical"] == "fetch_failed"


def test_counters_add_up(store):
    stats = StatsStore(store)
    key = ("2026-11-22", "search", "", "web", "flohmarkt")
    stats.add({key: 2, ("2026-11-22", "record_view", "laden", "web", "7"): 1})
    stats.add({key: 3})
    found = {(c.event, c.subject): c.n for c in stats.counts(date(2026, 11, 1), date(2026, 11, 30))}
    assert found == {("search", "flohmarkt"): 5, ("record_view", "7"): 1}


def test_sessions_are_kept_by_hash_and_end(store):
    admin = AdminStore(store)
    admin.open_session("a" * 64, "anna", "admin", T0, timedelta(hours=12))
    assert admin.session("a" * 64, T0 + timedelta(hours=1), timedelta(hours=4)).user == "anna"
    assert admin.session("a" * 64, T0 + timedelta(hours=6), timedelta(hours=4)) is None  # idle too long
    assert admin.session("a" * 64, T0 + timedelta(hours=4, minutes=30), timedelta(hours=4)).role == "admin"
    assert admin.session("a" * 64, T0 + timedelta(hours=13), timedelta(days=1)) is None  # past its lifetime
    admin.close_session("a" * 64)
    assert admin.session("a" * 64, T0, timedelta(hours=4)) is None


def test_hide_with_a_reason_edit_and_merge_by_hand(store):
    ingested(store)
    admin = AdminStore(store)
    one, two = record_of(store, "Beitrag 1"), record_of(store, "Beitrag 2")

    assert admin.hide(one, "Doppelt", "anna", now=T0)
    record = store.records.get(one)
    assert (record.status, record.status_reason) == ("hidden", "Doppelt")
    assert store.records.revisions(one)[-1].detail == {"status": "hidden", "reason": "Doppelt"}
    assert admin.approve(one, "anna", now=T0)
    assert store.records.get(one).status == "published"

    second_image = "https://laden.example/1b.jpg"
    assert admin.edit(one, "ben", title="Neuer Titel", image=second_image, now=T0)
    record = store.records.get(one)
    assert record.item.title == "Neuer Titel" and record.item.media[0].url == second_image
    assert store.records.revisions(one)[-1].change == "edited"

    assert admin.merge(one, two, "anna", now=T0)
    merged = store.records.get(one)
    assert sorted(o.item.title for o in merged.origins) == ["Beitrag 1", "Beitrag 2"]
    assert merged.item.title == "Neuer Titel"  # the edit stands
    assert store.records.get(two) is None
    last = [(r.record_id, r.change) for r in store.records.changes()][-4:]  # what renderers follow
    assert {(one, "merged"), (two, "moved"), (two, "removed")} <= set(last)
    assert not admin.merge(one, two, "anna", now=T0)  # gone now
    assert not admin.edit(999999, "anna", title="x")

    actions = [(e.user, e.action, e.target) for e in reversed(admin.audit())]
    assert actions == [("anna", "hide", str(one)), ("anna", "approve", str(one)), ("ben", "edit", str(one)),
                       ("anna", "merge", str(one))]
    assert admin.last_of("merge", [str(one)])[str(one)].detail["merged"] == two


def test_the_review_queue_lists_waiting_records_oldest_first(store):
    ingested(store)
    admin = AdminStore(store)
    one, two = record_of(store, "Beitrag 1"), record_of(store, "Beitrag 2")
    assert admin.review_ids() == ([], 0)
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE records SET status = 'pending' WHERE id IN ({one}, {two})")
    ids, total = admin.review_ids()
    assert total == 2 and sorted(ids) == sorted([one, two])
    admin.approve(one, "anna")
    assert admin.review_ids() == ([two], 1)


def test_the_review_queue_is_found_by_status_not_by_reading_every_record(store):
    """The queue's count is on every cockpit page (the menu says how many wait): found by an
    index on status, not by reading the store's every record; the expired and removed wait no
    more, and what a rule hid waits, what a person hid does not."""
    from sqlalchemy import event, update

    from hub.store.tables import RecordRow

    RECORDS = RecordRow.__table__
    ingested(store)
    store.apply([FetchOutcome("laden-rss", T0, "ok", parsed=Parsed((entry(1), entry(2), entry(3)), complete=True))])
    admin = AdminStore(store)
    one, two, three = (record_of(store, f"Beitrag {n}") for n in (1, 2, 3))
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"UPDATE records SET status = 'hidden', status_by = 'rule' WHERE id = {one}")
        conn.exec_driver_sql(f"UPDATE records SET status = 'hidden', status_by = 'anna' WHERE id = {two}")
        conn.exec_driver_sql(f"UPDATE records SET status = 'held' WHERE id = {three}")
    ids, total = admin.review_ids()
    assert sorted(ids) == sorted([one, three]) and total == 2
    with store.engine.begin() as conn:
        conn.execute(update(RECORDS).where(RECORDS.c.id == three).values(expires_at=datetime.now(timezone.utc) - timedelta(days=1)))
    assert admin.review_ids() == ([one], 1)
    if store.dialect != "sqlite":
        return
    statements = []
    event.listen(store.engine, "before_cursor_execute", lambda c, cur, sql, params, *_: statements.append((sql, params)))
    admin.review_ids()
    [(sql, params)] = [s for s in statements if s[0].lstrip().startswith("SELECT")]
    with store.engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params))
    assert "USING INDEX" in plan and "SCAN records" not in plan, plan
