"""The delivery ledger (issue 16), on SQLite and PostgreSQL: written in the record's own
transaction for every channel whose rules want the record; one row per (channel, record,
version); a newer version supersedes an unsent older one, never one that may have gone out;
withdrawals only where a channel had the record; the old per-item ledger carried over by
migration 0015. And its rules without I/O: backoff with jitter for about three days,
Retry-After, the pace's slots, quiet hours, stable delivery ids."""

from __future__ import annotations

import random
from datetime import datetime, time, timedelta, timezone

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.exc import IntegrityError

from hub.ledger import (GIVE_UP_AFTER, RETRY_DELAYS, ChannelRules, Pace, delivery_id, parse_quiet, retry_at,
                        rules_for)
from hub.models import Item, Parsed
from hub.moderation import MerchantRules, Rules
from hub.store import MIGRATIONS, FetchOutcome, SourceSpec, Store
from hub.store.ledger import ChannelSpec, LedgerStore
from tests.test_store import T0, entry, fetched

ALL = ChannelRules()


def ledger(store: Store) -> list[tuple]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql(
            "SELECT channel_id, record_id, version, op, status FROM ledger ORDER BY id")]


def town(store: Store, channels: dict[str, ChannelRules], rules: Rules | None = None) -> LedgerStore:
    store.sync_sources([SourceSpec("laden-rss", "laden", "rss"), SourceSpec("verein-rss", "verein", "rss")])
    store.records.configure(rules or Rules())
    found = LedgerStore(store)
    found.sync_channels({cid: ChannelSpec("webhook", r) for cid, r in channels.items()}, T0)
    return found


def record_of(store: Store, external_id: str) -> int:
    with store.engine.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT o.record_id FROM record_origins o JOIN items i ON i.id = o.item_id "
            f"WHERE i.external_id = '{external_id}'").scalar_one()


# --- the store ---------------------------------------------------------------------------------

def test_a_new_record_gets_one_row_per_channel_in_its_own_transaction(store):
    town(store, {"a": ALL, "b": ALL})
    store.apply([fetched([entry(1), entry(2)])])
    rows = ledger(store)
    assert sorted((c, v, op, s) for c, _, v, op, s in rows) == [("a", 0, "publish", "pending")] * 2 + \
        [("b", 0, "publish", "pending")] * 2
    store.apply([fetched([entry(1), entry(2)])])  # nothing changed: nothing new to deliver
    assert ledger(store) == rows


def test_one_row_per_channel_record_and_version(store):
    town(store, {"a": ALL})
    store.apply([fetched([entry(1)])])
    [(_, record, version, _, _)] = ledger(store)
    with pytest.raises(IntegrityError), store.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO ledger (channel_id, record_id, version, op, status, attempts, created_at) "
                             f"VALUES ('a', {record}, {version}, 'publish', 'pending', 0, '2026-11-22 12:00:00')")


def test_a_failing_ledger_write_rolls_the_record_back_too(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/hub.db")
    town(store, {"a": ALL})
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER no_ledger BEFORE INSERT ON ledger "
                             "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with pytest.raises(Exception, match="disk full"):
        store.apply([fetched([entry(1)])])
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar_one() == 0
        assert conn.exec_driver_sql("SELECT count(*) FROM records").scalar_one() == 0
    store.close()


def test_an_edit_is_a_new_version_that_supersedes_the_unsent_one(store):
    town(store, {"a": ALL})
    store.apply([fetched([entry(1)])])
    store.apply([fetched([entry(1, title="Beitrag 1, korrigiert")])], )
    [(_, record, v0, _, first), (_, _, v1, op, second)] = ledger(store)
    assert (first, second, op) == ("superseded", "pending", "publish") and v1 > v0 == 0


def test_a_version_that_may_have_gone_out_is_not_superseded_and_holds_the_newer_back(store):
    found = town(store, {"a": ALL})
    store.apply([fetched([entry(1)])])
    [claimed] = found.claim("a", T0, "run", T0 + timedelta(minutes=5), 10)
    store.apply([fetched([entry(1, title="Beitrag 1, korrigiert")])])
    assert [s for *_, s in ledger(store)] == ["sending", "pending"]
    assert found.peek("a", T0 + timedelta(minutes=1), 10) == []  # the newer waits for the older
    found.reclaim_stale("a", T0 + timedelta(minutes=6), dedup=None)  # its run died: nobody knows
    assert [s for *_, s in ledger(store)] == ["unconfirmed", "pending"]
    assert found.peek("a", T0 + timedelta(minutes=7), 10) == []  # still held: a person checks first
    found.mark_sent("a", claimed.record_id, T0 + timedelta(minutes=8), remote_id="42")
    [newer] = found.peek("a", T0 + timedelta(minutes=9), 10)
    assert newer.version > claimed.version
    assert found.copies("a", [claimed.record_id])[claimed.record_id].remote_id == "42"


def test_a_crashed_run_s_rows_are_sent_again_where_the_channel_drops_repeats(store):
    found = town(store, {"a": ALL})
    store.apply([fetched([entry(1)])])
    found.claim("a", T0, "run", T0 + timedelta(minutes=5), 10)
    assert found.reclaim_stale("a", T0 + timedelta(minutes=1), dedup=None) == 0  # its lease holds
    assert found.reclaim_stale("a", T0 + timedelta(minutes=6), dedup=timedelta(days=1)) == 1
    [again] = found.claim("a", T0 + timedelta(minutes=6), "next run", T0 + timedelta(minutes=11), 10)
    assert again.attempts == 2 and again.doubt_since == T0


def test_channel_rules_kinds_merchants_categories_and_tags(store):
    rules = {"events": ChannelRules(kinds=("event",)), "verein": rules_for([], [], ["verein"], [], {"verein": "verein",
                                                                                                  "laden": "handel"}),
             "angebote": rules_for([], [], [], ["#Angebot"], {}), "markt": rules_for([], ["laden"], [], ["markt"], {})}
    town(store, rules)
    club = Item(source_id="verein-rss", external_id="v1", merchant_id="verein", title="Mitgliederversammlung",
                content_text="Alle sind eingeladen.", published=T0)
    store.apply([fetched([entry(1)]), FetchOutcome("verein-rss", T0, "ok", parsed=Parsed((club,)))])
    wanted = {(c, r) for c, r, *_ in ledger(store)}
    assert wanted == {("verein", record_of(store, "v1")), ("angebote", record_of(store, "e1"))}


def test_a_record_held_for_review_waits_and_a_hidden_one_is_withdrawn(store):
    town(store, {"a": ALL}, Rules({"laden": MerchantRules(trust="review")}))
    store.apply([fetched([entry(1)])])
    assert ledger(store) == []  # not shown: not sent
    record = record_of(store, "e1")
    store.records.approve(record)
    assert [(op, s) for *_, op, s in ledger(store)] == [("publish", "pending")]
    store.records.hide(record)
    assert [(op, s) for *_, op, s in ledger(store)] == [("publish", "superseded"), ("withdraw", "pending")]


def test_a_removed_record_is_withdrawn_only_where_it_was_announced(store):
    town(store, {"alles": ALL, "nur-verein": ChannelRules(merchants=("verein",))})
    store.apply([fetched([entry(1), entry(2), entry(3)])])
    store.apply([fetched([entry(1), entry(3)])])  # the merchant deleted e2
    gone = record_of(store, "e2")
    assert [(c, op) for c, r, _, op, _ in ledger(store) if r == gone] == [("alles", "publish"), ("alles", "withdraw")]


def test_a_channel_added_later_gets_what_changes_after_not_the_archive(store):
    found = town(store, {"a": ALL})
    store.apply([fetched([entry(1), entry(2)])])
    found.sync_channels({"a": ChannelSpec("webhook", ALL), "neu": ChannelSpec("mastodon", ALL)}, T0)
    store.apply([fetched([entry(1, title="Beitrag 1, korrigiert"), entry(2)])])
    assert [(r, op) for c, r, _, op, _ in ledger(store) if c == "neu"] == [(record_of(store, "e1"), "publish")]
    found.sync_channels({"neu": ChannelSpec("mastodon", ALL)}, T0)  # "a" left the config
    store.apply([fetched([entry(1), entry(2)])])
    assert found.channel("a").state == "removed"
    assert not [1 for c, *_ in ledger(store)[4:] if c == "a"]


def test_a_disabled_channel_is_active_again_once_its_options_change(store):
    found = town(store, {})
    found.sync_channels({"hook": ChannelSpec("webhook", ALL, "fp1")}, T0)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE ledger_channels SET state = 'disabled', state_reason = 'HTTP 410'")
    found.sync_channels({"hook": ChannelSpec("webhook", ALL, "fp1")}, T0)
    assert found.channel("hook").state == "disabled"
    found.sync_channels({"hook": ChannelSpec("webhook", ALL, "fp2")}, T0)
    assert found.channel("hook").state == "active"


def test_migration_0015_carries_over_what_the_old_ledger_sent(tmp_path):
    url = f"sqlite:///{tmp_path}/hub.db"
    store = Store(url)
    store.sync_sources([SourceSpec("laden-rss", "laden", "rss")])
    store.apply([fetched([entry(1), entry(2)])])
    with store.engine.begin() as conn:  # the state of a hub before 0015, which sent e1 to "archiv"
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0015")  # 0016 (dispatch), which merges 0015 with the other heads
        item = conn.exec_driver_sql("SELECT id FROM items WHERE external_id = 'e1'").scalar_one()
        conn.exec_driver_sql("INSERT INTO deliveries (channel_id, item_id, status, attempts, created_at, sent_at) "
                             f"VALUES ('archiv', {item}, 'sent', 1, '2026-11-22 12:00:00', '2026-11-22 12:01:00')")
        for table in ("ledger_copies", "ledger", "ledger_channels"):
            conn.exec_driver_sql(f"DROP TABLE {table}")
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0011' WHERE version_num = '0015'")
        heads = set(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
        if "0002" not in heads:  # 0015 depends on 0002: alembic kept only 0015 of the two
            conn.exec_driver_sql("INSERT INTO alembic_version (version_num) VALUES ('0002')")
    store.close()
    store = Store(url)  # migrates
    record = record_of(store, "e1")
    assert ledger(store) == [("archiv", record, 0, "publish", "sent")]
    assert set(LedgerStore(store).copies("archiv", [record])) == {record}
    store.close()


# --- the rules, without I/O -----------------------------------------------------------------------

def test_retries_follow_the_schedule_with_jitter_and_end_after_about_three_days():
    rng = random.Random(7)
    first = now = T0
    attempts = 0
    while True:
        attempts += 1
        later = retry_at(now, attempts, first, rng=rng)
        if later is None:
            break
        delay = (later - now).total_seconds()
        planned = RETRY_DELAYS[attempts - 1].total_seconds()
        assert 0.8 * planned <= delay <= 1.2 * planned
        now = later
    assert attempts == len(RETRY_DELAYS) + 1 == 10
    assert timedelta(days=2, hours=12) < now - first < GIVE_UP_AFTER


def test_retry_after_is_the_least_wait_and_a_long_one_gives_up_in_time():
    assert retry_at(T0, 1, T0, retry_after=120, rng=random.Random(1)) == T0 + timedelta(seconds=120)
    assert retry_at(T0, 1, T0, retry_after=1, rng=random.Random(1)) < T0 + timedelta(seconds=7)
    assert retry_at(T0 + timedelta(days=3), 5, T0, retry_after=86400) is None


def test_pace_slots_are_even_and_not_saved_up():
    pace = Pace(per_hour=10)
    window = timedelta(seconds=30)
    assert pace.budget(T0, None, window) == 1
    slot = pace.taken(1, T0, None, window)
    assert slot == T0 + timedelta(minutes=6)
    assert pace.budget(T0 + timedelta(minutes=5), slot, window) == 0
    assert pace.budget(T0 + timedelta(minutes=6, seconds=20), slot, window) == 1  # a tick late: still that slot
    assert pace.taken(1, T0 + timedelta(minutes=6, seconds=20), slot, window) == T0 + timedelta(minutes=12)
    assert pace.budget(T0 + timedelta(hours=5), slot, window) == 1  # hours idle: one, not fifty
    assert Pace(per_hour=3600).budget(T0 + timedelta(seconds=30), T0, window) == 31
    assert Pace().budget(T0, None, window) is None


def test_quiet_hours_wrap_around_midnight_in_the_town_s_time():
    pace = Pace(per_hour=10, quiet=parse_quiet("22:00-07:00"), timezone="Europe/Berlin")
    winter_night = datetime(2026, 1, 10, 22, 30, tzinfo=timezone.utc)  # 23:30 in Berlin
    assert pace.is_quiet(winter_night) and pace.budget(winter_night, None, timedelta(seconds=30)) == 0
    assert pace.quiet_ends(winter_night) == datetime(2026, 1, 11, 6, 0, tzinfo=timezone.utc)
    assert not pace.is_quiet(datetime(2026, 7, 10, 5, 0, tzinfo=timezone.utc))  # 07:00 in summer
    assert parse_quiet("9:15 - 9:45") == (time(9, 15), time(9, 45))
    for wrong in ("22-7", "25:00-07:00", "07:00-07:00"):
        with pytest.raises(ValueError):
            parse_quiet(wrong)


def test_delivery_ids_are_stable_and_distinct():
    assert delivery_id("hook", 1, 5) == delivery_id("hook", 1, 5)
    ids = {delivery_id(c, r, v) for c in ("hook", "mastodon") for r in (1, 2) for v in (0, 5)}
    assert len(ids) == 8 and all(i.startswith("msg_") and len(i) == 30 for i in ids)


def test_rules_turn_categories_into_merchants_and_fold_tags():
    rules = rules_for(["event"], ["baeckerei"], ["verein"], ["#Advent", " Weihnachts Markt "],
                      {"baeckerei": "gastronomie", "tsv": "verein", "chor": "verein", "laden": None})
    assert rules == ChannelRules(("event",), ("baeckerei", "chor", "tsv"), ("advent", "weihnachts markt"))
    assert rules.wants("event", {"tsv"}, {"advent"}) and not rules.wants("post", {"tsv"}, {"advent"})
    assert not rules.wants("event", {"laden"}, {"advent"}) and not rules.wants("event", {"tsv"}, set())
    assert rules_for([], [], [], [], {"a": "x"}) == ChannelRules()
    assert ChannelRules.from_json(rules.as_json()) == rules
