"""Moderation and content rules from the YAML, applied to canonical records (SQLite and
PostgreSQL): review queue, block and keep words, label, per-channel quota, expiry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub import config
from hub.errors import ConfigError
from hub.models import Event, FetchState, Item, Offer, Parsed
from hub.moderation import rules_from
from hub.store import FetchOutcome, SourceSpec, Store

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)
RULES = """
platform: {name: Teststadt}
merchants:
  - id: laden
    name: Laden
    trust: review
    label: Anzeige
    block_words: [Gewinnspiel]
  - id: verein
    name: Verein
    keep_words: [Verein, Mitglieder]
    quota: {platform: 2}
    expire: {events: 6h, offers: 7d}
channels:
  - {id: platform, renderer: platform}
"""


def configured(store: Store, tmp_path: Path) -> Store:
    path = tmp_path / "config.yaml"
    path.write_text(RULES)
    store.records.configure(rules_from(config.load(path, env={})))
    store.sync_sources([SourceSpec("laden-rss", "laden", "feed"), SourceSpec("verein-rss", "verein", "feed")])
    return store


def entry(source: str, n: int, text: str, hours: float = 0, **kw) -> Item:
    merchant = source.split("-")[0]
    return Item(source, f"e{n}", merchant, title=f"{text[:40]} {n}", content_html=f"<p>{text}</p>",
                content_text=text, url=f"https://{merchant}.example/{n}", published=T0 + timedelta(hours=hours), **kw)


def fetch(store: Store, source: str, *items: Item) -> None:
    store.apply([FetchOutcome(source, T0, "ok", parsed=Parsed(items), state=FetchState())])


def titles(records) -> list[str]:
    return sorted(r.item.title for r in records)


def test_review_queue_approve_and_hide(store, tmp_path):
    configured(store, tmp_path)
    fetch(store, "laden-rss", entry("laden-rss", 1, "Neue Wintermode im Schaufenster"),
          entry("laden-rss", 2, "Mützen und Schals", hours=-1))
    assert store.records.list(now=T0) == []
    pending = store.records.list(status="pending", now=T0)
    assert len(pending) == 2 and pending[0].label == "Anzeige"
    assert "reviewed" in pending[0].status_reason

    assert store.records.approve(pending[0].id) and store.records.hide(pending[1].id)
    assert [r.id for r in store.records.list(now=T0)] == [pending[0].id]
    assert [(r.change, r.actor) for r in store.records.revisions(pending[1].id)] == [("status", "manager")]


def test_block_word_hides_until_an_edit_removes_it(store, tmp_path):
    configured(store, tmp_path)
    fetch(store, "laden-rss", entry("laden-rss", 1, "Großes GEWINNSPIEL: drei Gutscheine"))
    [hidden] = store.records.list(status="hidden", now=T0)
    assert hidden.status_reason == "contains the blocked word 'GEWINNSPIEL'"
    fetch(store, "laden-rss", entry("laden-rss", 1, "Drei Gutscheine zu gewinnen"))
    assert [r.id for r in store.records.list(status="pending", now=T0)] == [hidden.id]


def test_keep_words_and_per_day_quota(store, tmp_path):
    configured(store, tmp_path)
    posts = [entry("verein-rss", n, f"Der Verein lädt ein, Teil {n}", hours=n) for n in range(1, 5)]
    posts.append(entry("verein-rss", 5, "Kuchenverkauf am Bahnhof", hours=6))
    posts.append(entry("verein-rss", 6, "Neue Mitglieder willkommen", hours=30))  # the next day
    fetch(store, "verein-rss", *posts)
    assert len(store.records.list(now=T0)) == 5  # the cake sale has none of the keep words
    shown = store.records.list(channel="platform", now=T0)
    assert titles(shown) == ["Der Verein lädt ein, Teil 1 1", "Der Verein lädt ein, Teil 2 2",
                             "Neue Mitglieder willkommen 6"]
    assert store.records.count(channel="platform", now=T0) == 3


def test_past_events_and_offers_expire(store, tmp_path):
    configured(store, tmp_path)
    concert = entry("verein-rss", 1, "Konzert des Vereins", event=Event(start=T0 + timedelta(days=2),
                                                                          end=T0 + timedelta(days=2, hours=2)))
    sale = entry("verein-rss", 2, "Vereinsshop: Schals", offer=Offer(price="10.00"))
    dated = entry("verein-rss", 3, "Vereinsshop: Mützen", offer=Offer(price="8.00", valid_until=T0 + timedelta(days=1)))
    fetch(store, "verein-rss", concert, sale, dated)
    assert len(store.records.list(now=T0)) == 3
    later = T0 + timedelta(days=2, hours=9)  # concert over for 7 h, cap offer ended, scarf offer 2 days old
    assert titles(store.records.list(now=later)) == ["Vereinsshop: Schals 2"]
    assert len(store.records.list(now=T0 + timedelta(days=8))) == 0
    assert len(store.records.list(now=T0 + timedelta(days=8), expired=True)) == 3


def test_moderation_keys_are_checked_with_file_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("merchants:\n  - id: laden\n    name: Laden\n    trust: sometimes\n    quota: {platform: -1}\n"
                    "    expire: {event: 1d}\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    lines = sorted(p.split(":")[1] for p in info.value.problems)
    assert lines == ["4", "5", "6"]
    assert any("did you mean 'events'" in p for p in info.value.problems)
