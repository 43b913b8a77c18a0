"""What the store does for sources that need a person and for entries a source names as
deleted or back (issue 12), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.models import FetchState, Item, Parsed
from hub.store import FetchOutcome, SourceSpec
from hub.store.scheduling import ScheduleStore

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


def post(n: int, days: int, text: str = "Beitrag") -> Item:
    return Item(source_id="fb", external_id=f"p{n}", merchant_id="m", title=f"{text} {n}",
                content_html=f"<p>{text} {n}</p>", published=T0 - timedelta(days=days))


def ok(parsed: Parsed, at: datetime = T0) -> FetchOutcome:
    return FetchOutcome("fb", at, "ok", parsed=parsed, state=FetchState(cursor="c"))


def test_a_source_held_for_a_person_is_let_go_when_its_options_change(store):
    store.sync_sources([SourceSpec("fb", "m", "facebook", "hash-1"), SourceSpec("rss", "m", "rss", "hash-x")])
    plans = ScheduleStore(store)
    plans.prepare_sources(["fb", "rss"], T0, timedelta(0))
    store.apply([FetchOutcome("fb", T0, "failed", error="Facebook-Zugang ungültig (…)", error_code="token_invalid")])
    status = {s.id: s for s in store.source_statuses()}["fb"]
    assert (status.status, status.held, status.held_at) == ("failing", "token_invalid", T0)
    assert store.fetch_states(["fb"])["fb"].hold == "Facebook-Zugang ungültig (…)"
    assert plans.due_sources(T0 + timedelta(days=9), 10) == ["rss"]
    assert plans.source_schedules()["fb"].reason.startswith("not fetched until a person acts")
    store.sync_sources([SourceSpec("fb", "m", "facebook", "hash-1")])  # a restart, same token: still held
    assert plans.due_sources(T0 + timedelta(days=9), 10) == ["rss"]
    store.sync_sources([SourceSpec("fb", "m", "facebook", "hash-2")])  # a new token
    plans.prepare_sources(["fb", "rss"], T0, timedelta(0))
    assert sorted(plans.due_sources(T0 + timedelta(days=9), 10)) == ["fb", "rss"]
    assert store.fetch_states(["fb"])["fb"].hold is None
    status = {s.id: s for s in store.source_statuses()}["fb"]
    assert (status.held, status.error_count) == (None, 0)


def test_other_failures_hold_nothing(store):
    store.sync_sources([SourceSpec("fb", "m", "facebook", "hash-1")])
    store.apply([FetchOutcome("fb", T0, "failed", error="Facebook bremst", error_code="graph_throttled")])
    assert {s.id: s.held for s in store.source_statuses()} == {"fb": None}


def test_gone_entries_are_tombstoned_in_a_partial_payload_and_a_live_read_brings_one_back(store):
    store.sync_sources([SourceSpec("fb", "m", "facebook")])
    [first] = store.apply([ok(Parsed(items=(post(1, 1), post(2, 2), post(3, 30))))])
    assert len(first.new) == 3
    [result] = store.apply([ok(Parsed(items=(post(1, 1),), complete=False, gone=("p2", "p9")))])
    assert result.gone == ["p2"]
    assert {s.item.external_id for s in store.items()} == {"p1", "p3"}
    [stale] = store.apply([ok(Parsed(items=(post(2, 2),), complete=False))])  # a cached copy: stays gone
    assert stale.unchanged == 1 and "p2" not in {s.item.external_id for s in store.items()}
    [live] = store.apply([ok(Parsed(items=(post(2, 2),), complete=False, revive=True))])
    assert live.changed == ["p2"] and "p2" in {s.item.external_id for s in store.items()}
    assert store.records.count() == 3


def test_the_due_look_reads_only_the_held_sources_not_a_row_per_source(pg_url):
    """Every claim of a dispatch tick leaves the held sources out; source_holds has a row per
    configured source (nearly all not held), and PostgreSQL read all of them each time, which
    made a claim in a town of 55,000 sources 4-6x slower (migration 0018)."""
    from sqlalchemy import text

    from hub.store import Store

    store = Store(pg_url)
    try:
        store.sync_sources([SourceSpec(f"s{i}", "m", "rss", f"hash-{i}") for i in range(5000)])
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE source_holds SET hold = 'token_invalid' WHERE source_id IN ('s1', 's2')"))
            conn.execute(text("ANALYZE source_holds"))
        plans = ScheduleStore(store)
        plans.prepare_sources([f"s{i}" for i in range(5000)], T0, timedelta(0))
        assert len(plans.due_sources(T0 + timedelta(days=1), 10_000)) == 4998  # the held ones left out
        with store.engine.connect() as conn:
            plan = "\n".join(conn.execute(text(
                "EXPLAIN SELECT count(*) FROM sources WHERE id NOT IN "
                "(SELECT source_id FROM source_holds WHERE hold IS NOT NULL)")).scalars())
        assert "ix_source_holds_held" in plan and "Seq Scan on source_holds" not in plan, plan
    finally:
        store.close()
