"""Full-text search (issue 14): German stems, the query language residents type, highlighting,
and the store's index on SQLite (FTS5) and PostgreSQL (german): ranked, combined with the
pages' filters, kept current on every insert, edit, removal, merge, split and retention, and
never failing whatever a resident types."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from hypothesis import HealthCheck, given, settings, strategies as st
from markupsafe import Markup
from typer.testing import CliRunner

from hub import moderation
from hub.cli import app
from hub.models import Event, FetchState, Item, Kind, Parsed
from hub.search import highlight, match_query, parse, stem_text, tsquery_text
from hub.store import MIGRATIONS, FetchOutcome, SourceSpec, Store
from hub.store.scheduling import ScheduleStore

DATA = Path(__file__).parent / "data" / "search"
T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # fixed: everything is judged with now=
HOSTILE = ['"', '""', '"""', "*", "Konzert*", "*Konzert", "NEAR(Konzert Park)", "NEAR(", "NEAR(Konzert, 2)", "OR",
           "AND", "NOT", "Konzert OR", "OR Konzert", "Konzert AND NOT Park", "(", ")", "((Konzert", "Konzert))",
           "title:Konzert", "merchant : mx00", ":", "^Konzert", "-", "--Konzert", "- Konzert", "-Konzert", "+Konzert",
           "'", "Konzert'; DROP TABLE records; --", "\\", "\x00Konzert", "\u200b", "Konzert\nPark", "Konzert\tPark",
           "🎄 Weihnachtsmarkt 🎅", "ß", "x" * 5000, " ".join(["Konzert"] * 1000), '"Konzert', "{title}: Konzert",
           "@@", "!!Konzert", "&", "|", "<->", "Konzert <-> Park", "'Konzert'", "Konzert:*", "%", "_", "Konzert%",
           "die der das", "-Konzert -Park", "OR OR OR", '"Konzert" OR "', "Ǆ ǅ ǆ", "١٢٣", "ﬁ"]


# --- the pure part: stems, queries, highlighting ----------------------------------------------

def fts(*texts: str) -> sqlite3.Connection:
    """An FTS5 table as the store's, holding these texts as bodies (rowid 1, 2, ...)."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE record_search USING fts5(title, body, merchant)")
    conn.executemany("INSERT INTO record_search (rowid, title, body, merchant) VALUES (?, '', ?, '')",
                     [(i, stem_text(t)) for i, t in enumerate(texts, 1)])
    return conn


def hits(conn: sqlite3.Connection, q: str) -> list[int]:
    expression = match_query(q)
    if expression is None:
        return []
    return [r for r, in conn.execute("SELECT rowid FROM record_search WHERE record_search MATCH ? ORDER BY rowid",
                                     (expression,))]


def test_recorded_pairs_of_query_and_text():
    cases = json.loads((DATA / "stems.json").read_text())
    for q, text in cases["finds"]:
        assert hits(fts(text), q) == [1], (q, text, stem_text(text), match_query(q))
    for q, text in cases["misses"]:
        assert hits(fts(text), q) == [], (q, text, stem_text(text), match_query(q))


def test_the_query_language_residents_know():
    conn = fts("Konzert im Park", "Lesung in der Bücherei", "Konzert in der Kirche", "Tag der offenen Tür im Rathaus",
               "Offene Tür, aber kein Tag")
    assert hits(conn, "Konzerte") == [1, 3]
    assert hits(conn, "Konzert Park") == [1]  # every word
    assert hits(conn, "Konzert -Kirche") == [1]  # but not this one
    assert hits(conn, "Konzert OR Lesung") == [1, 2, 3]
    assert hits(conn, "Kirche OR Park Konzert") == [1, 3]  # OR binds the words beside it
    assert hits(conn, '"Tag der offenen Tür"') == [4]  # a phrase, stop words and all
    assert hits(conn, "Tag offenen Tür") == [4, 5]
    assert hits(conn, "Konzert am Samstag im Park") == []  # "am", "im": stop words; Samstag is missing
    assert hits(conn, "Konzert im Park") == [1]
    assert match_query("die der das") is None and match_query("-Konzert") is None  # nothing to look for
    assert match_query("   ") is None and match_query(None) is None


def test_hostile_queries_are_words_or_nothing():
    conn = fts("Großes Konzert im Park", "Weihnachtsmarkt mit Glühwein")
    for q in HOSTILE:
        expression = match_query(q)
        assert expression is None or hits(conn, q) is not None, q  # runs as FTS5 syntax, or is nothing
    assert hits(conn, "Konzert*") == hits(conn, '"Konzert') == hits(conn, "((Konzert") == [1]
    assert hits(conn, "NEAR(Konzert Park)") == []  # "near" is a word like any other
    assert hits(conn, "🎄 Weihnachtsmarkt 🎅") == [2]
    assert len(parse("x " * 5000).groups) == 16  # the rest of a pasted text is ignored


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_a_valid_query(q):
    conn = fts("Konzert im Park")
    hits(conn, q)  # raises if the expression were not valid FTS5
    assert (match_query(q) is None) == (tsquery_text(q) is None)


def test_highlight_escapes_the_text_and_marks_the_stems():
    text = '<script>alert("x")</script> Zwei Konzerte & ein Sommer-Fest im Café'
    marked = highlight(text, "Konzert Sommerfest cafe")
    assert isinstance(marked, Markup)
    assert marked == ('&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; Zwei <mark>Konzerte</mark> &amp; ein '
                      '<mark>Sommer-Fest</mark> im <mark>Café</mark>')
    assert highlight("Das Fest im Park", "Sommer-Fest") == "Das <mark>Fest</mark> im Park"  # a part of it
    # neither stop words nor excluded words are marked
    assert highlight("Konzert im Park", "im Konzert -Park") == "<mark>Konzert</mark> im Park"
    assert highlight("a < b", "") == "a &lt; b" and highlight(None, "x") == ""
    assert highlight("<b>Konzert</b>", '"') == "&lt;b&gt;Konzert&lt;/b&gt;"


def test_highlight_cuts_a_snippet_around_the_first_match():
    text = " ".join(["Vorwort"] * 40) + " Am Samstag spielt das große Konzert im Park. " + " ".join(["Nachwort"] * 40)
    snippet = highlight(text, "Konzerte", limit=80)
    plain = snippet.replace("<mark>", "").replace("</mark>", "")
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "<mark>Konzert</mark>" in snippet and len(plain) <= 82
    assert plain.index("Konzert") < 40  # the match early in the snippet, some words before it
    assert highlight("Kurz und gut", "gut", limit=80) == "Kurz und <mark>gut</mark>"
    assert highlight(" ".join(["Wort"] * 50), "Konzert", limit=20).endswith("…")  # no match: the start


# --- the store: SQLite and PostgreSQL ---------------------------------------------------------

def item(n: int, merchant: str = "laden", *, title: str, text: str = "", source: str | None = None, tags=(),
         start: datetime | None = None, hours: float | None = None, html: str | None = None,
         url: str | None = None) -> Item:
    return Item(source_id=source or f"{merchant}-rss", external_id=f"e{n}", merchant_id=merchant, title=title,
                content_html=html or f"<p>{text}</p>", content_text=text, url=url or f"https://{merchant}.example/{n}",
                published=T0 - timedelta(hours=hours if hours is not None else n), tags=tuple(tags),
                kind=Kind.EVENT if start else Kind.POST,
                event=Event(start=start, timezone="Europe/Berlin", location="Stadthalle") if start else None)


def fetch(store: Store, source: str, items, *, at: datetime = T0, complete: bool = False, gone=()) -> None:
    store.apply([FetchOutcome(source, at, "ok", parsed=Parsed(tuple(items), complete=complete, gone=gone),
                              state=FetchState())])


def ready(store: Store) -> Store:
    store.sync_sources([SourceSpec("laden-rss", "laden", "rss"), SourceSpec("laden-fb", "laden", "facebook"),
                        SourceSpec("verein-rss", "verein", "rss")])
    return store


def found(store: Store, q: str, **filters) -> list[str]:
    return [r.item.title for r in store.records.list(q=q, order="relevance", now=T0, limit=100, **filters)]


def indexed(store: Store) -> set[int]:
    """Record ids the search index has a row for."""
    key = "rowid" if store.dialect == "sqlite" else "record_id"
    with store.engine.connect() as conn:
        return {r for r, in conn.exec_driver_sql(f"SELECT {key} FROM record_search")}


def test_stems_are_found_and_a_title_match_ranks_first(store):
    ready(store)
    fetch(store, "laden-rss", [item(1, title="Konzert im Park", text="Musik unter Bäumen.", hours=48),
                               item(2, title="Neuigkeiten", text="Samstag ein Konzert, Sonntag noch eins.", hours=2),
                               item(3, title="Sommer", text="Die Konzerte beginnen.", hours=1),
                               item(4, title="Weihnachtsmärkte der Region", text="Glühwein und Musik.")])
    assert found(store, "Konzerte")[0] == "Konzert im Park"  # older, but in the title
    assert sorted(found(store, "Konzerte")) == ["Konzert im Park", "Neuigkeiten", "Sommer"]
    assert store.records.count(q="Konzerte", now=T0) == 3
    assert found(store, "Weihnachtsmarkt") == found(store, "weihnachtsmärkte") == ["Weihnachtsmärkte der Region"]
    assert found(store, "Stadtfest") == [] and store.records.count(q="Stadtfest", now=T0) == 0
    newest = [r.item.title for r in store.records.list(q="Konzerte", now=T0)]  # order="newest" with a search
    assert newest == ["Sommer", "Neuigkeiten", "Konzert im Park"]
    assert len(store.records.list(q="   ", now=T0)) == 4  # a blank search is no filter


def test_search_combines_with_the_filters(store):
    ready(store)
    store.records.configure(moderation.Rules({"laden": moderation.MerchantRules(quota={"platform": 2}),
                                              "verein": moderation.MerchantRules(trust="review")}))
    fetch(store, "laden-rss", [item(1, title="Konzert am Morgen", hours=3, tags=("Musik",)),
                               item(2, title="Konzert am Mittag", hours=2),
                               item(3, title="Konzert am Abend", hours=1),  # the day's third: over the quota
                               item(4, title="Konzert im Advent", start=T0 + timedelta(days=3), hours=30),
                               item(5, title="Konzert von gestern", start=T0 - timedelta(days=3), hours=100)])
    fetch(store, "verein-rss", [item(6, "verein", title="Konzert des Vereins", hours=5)])  # waits for review
    assert sorted(found(store, "Konzert")) == ["Konzert am Abend", "Konzert am Mittag", "Konzert am Morgen",
                                               "Konzert im Advent"]  # not the expired, not the pending one
    assert found(store, "Konzert", kinds=["event"]) == ["Konzert im Advent"]
    assert found(store, "Konzert", tags=["musik"]) == ["Konzert am Morgen"]
    assert found(store, "Konzert", merchants=["verein"]) == []
    assert found(store, "Konzert", merchants=["verein"], status="pending") == ["Konzert des Vereins"]
    assert found(store, "Konzert", starts_from=T0) == ["Konzert im Advent"]
    assert found(store, "Konzert", expired=True, kinds=["event"], starts_until=T0) == ["Konzert von gestern"]
    on_platform = found(store, "Konzert", channel="platform")
    assert "Konzert am Abend" not in on_platform and len(on_platform) == 3
    assert store.records.count(q="Konzert", channel="platform", now=T0) == 3
    assert store.records.count(q="Konzert", kinds=["post"], now=T0) == 3
    marks = store.records.marks(q="Konzert", order="relevance", now=T0)
    assert [i for i, _ in marks] == [r.id for r in store.records.list(q="Konzert", order="relevance", now=T0)]


def test_a_merchant_is_found_by_its_configured_name(store):
    ready(store)
    store.records.configure(moderation.Rules({"laden": moderation.MerchantRules(name="Bäckerei Schmitz")}))
    fetch(store, "laden-rss", [item(1, title="Frische Brötchen"), item(2, title="Lesung am Abend")])
    fetch(store, "verein-rss", [item(3, "verein", title="Lesung im Verein")])
    assert sorted(found(store, "Schmitz")) == ["Frische Brötchen", "Lesung am Abend"]
    assert found(store, "Bäckerei Schmitz Lesung") == ["Lesung am Abend"]
    assert found(store, "Baeckerei Lesungen") == ["Lesung am Abend"]
    assert found(store, "Lesung")[0] in ("Lesung am Abend", "Lesung im Verein") and len(found(store, "Lesung")) == 2


def test_the_index_follows_edits_removals_merges_splits_and_retention(store):
    ready(store)
    advent = item(1, title="Adventskonzert im Laden", text="Wir laden ein.", url="https://laden.example/advent")
    fetch(store, "laden-rss", [advent, item(2, title="Frische Brötchen")])
    [record_id] = [r.id for r in store.records.list(q="Adventskonzert", now=T0)]

    fetch(store, "laden-rss", [advent.evolve(title="Adventslesung im Laden"), item(2, title="Frische Brötchen")],
          at=T0 + timedelta(minutes=5))  # an edit
    assert found(store, "Adventskonzert") == [] and found(store, "Adventslesung") == ["Adventslesung im Laden"]

    post = Item("laden-fb", "f1", "laden", title="", content_text="Mit Glühwein! Mehr",
                content_html='<p>Mit Glühwein! <a href="https://laden.example/advent">Mehr</a></p>',
                url="https://facebook.com/laden/1", published=T0 + timedelta(hours=1))
    fetch(store, "laden-fb", [post], at=T0 + timedelta(minutes=10))  # the same thing on Facebook: merged
    assert [r.id for r in store.records.list(q="Glühwein", now=T0)] == [record_id]
    assert found(store, "Adventslesung Glühwein") == ["Adventslesung im Laden"]  # both origins' words, one record

    [split_off] = store.records.split(record_id)
    assert [r.id for r in store.records.list(q="Glühwein", now=T0)] == [split_off]
    assert [r.id for r in store.records.list(q="Adventslesung", now=T0)] == [record_id]

    fetch(store, "laden-rss", [], gone=("e1",), at=T0 + timedelta(minutes=15))  # deleted at the source: removed
    assert found(store, "Adventslesung") == [] and record_id not in indexed(store)
    assert found(store, "Adventslesung", removed=True) == []  # a removed record has no live text to find
    back = advent.evolve(title="Adventslesung im Laden, neu")
    fetch(store, "laden-rss", [back], at=T0 + timedelta(minutes=20))  # back, edited: restored
    assert found(store, "Adventslesung neu") == ["Adventslesung im Laden, neu"]

    fetch(store, "laden-fb", [], gone=("f1",), at=T0 + timedelta(days=1))
    ScheduleStore(store).forget_deleted(T0 + timedelta(days=30))  # retention: forgotten with the record
    with store.engine.connect() as conn:
        records = {r for r, in conn.exec_driver_sql("SELECT id FROM records")}
    assert split_off not in records and indexed(store) <= records
    assert found(store, "Glühwein") == []


def test_hostile_queries_never_fail_on_the_store(store):
    ready(store)
    fetch(store, "laden-rss", [item(1, title="Großes Konzert im Park"), item(2, title="Weihnachtsmarkt")])
    for q in HOSTILE:
        titles = found(store, q)
        assert store.records.count(q=q, now=T0) == len(titles), q
        assert store.records.marks(q=q, order="relevance", now=T0) is not None
    for q in ("Konzert*", '"Konzert', "((Konzert", "Konzert))", "+Konzert", "!!Konzert", "Konzert:*",
              "\x00Konzert", "Konzert';"):
        assert "Großes Konzert im Park" in found(store, q), q
    assert found(store, "Konzert", channel="platform") == ["Großes Konzert im Park"]


@pytest.mark.postgres
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(max_size=60))
def test_any_text_is_a_valid_query_on_postgresql(pg_url, q):
    import psycopg

    expression = tsquery_text(q)
    if expression is not None:
        with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
            conn.execute("SELECT to_tsvector('german', 'Konzert') @@ to_tsquery('german', %s)", (expression,))


def test_relevance_ranks_the_newest_matches_then_lists_the_older(store, monkeypatch):
    monkeypatch.setattr("hub.store.records.RANKED", 3)
    ready(store)
    fetch(store, "laden-rss", [item(n, title=f"Konzert {n}" if n == 6 else f"Beitrag {n}", text=f"Ein Konzert {n}.",
                                    hours=n) for n in range(1, 8)])
    pages = [store.records.list(q="Konzert", order="relevance", now=T0, limit=2, offset=o) for o in range(0, 8, 2)]
    titles = [r.item.title for page in pages for r in page]
    assert len(titles) == 7 and len(set(titles)) == 7  # every match once, across the ranked ones' edge
    assert set(titles[:3]) == {"Beitrag 5", "Konzert 6", "Beitrag 7"}  # the three stored last are ranked ...
    assert titles[0] == "Konzert 6"  # ... the title match first
    assert titles[3:] == ["Beitrag 4", "Beitrag 3", "Beitrag 2", "Beitrag 1"]  # then the older ones, newest first
    assert [i for i, _ in store.records.marks(q="Konzert", order="relevance", now=T0, limit=5)] == \
        [r.id for page in pages for r in page][:5]


def test_the_migration_indexes_the_records_there_are(store):
    ready(store)
    fetch(store, "laden-rss", [item(1, title="Konzert im Park"), item(2, title="Lesung")])
    fetch(store, "laden-rss", [], gone=("e2",), at=T0 + timedelta(minutes=5))  # removed: not indexed
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0011@0010")  # as if the records had been stored before 0011 (and what builds on it)
        tables = ("SELECT name FROM sqlite_master" if store.dialect == "sqlite"
                  else "SELECT tablename FROM pg_tables")
        assert "record_search" not in {n for n, in conn.exec_driver_sql(tables)}
    store.migrate()
    assert found(store, "Konzerte") == ["Konzert im Park"] and found(store, "Lesung") == []
    assert len(indexed(store)) == 1


def test_hub_items_searches_with_stems(tmp_path, monkeypatch):
    news = {"version": "https://jsonfeed.org/version/1.1", "title": "Verein", "items": [
        {"id": "v1", "title": "Zwei Konzerte im Advent", "content_text": "Der Chor singt.",
         "date_published": "2026-11-20T10:00:00+01:00"},
        {"id": "v2", "title": "Neue Trikots", "content_text": "Nach dem Konzert gibt es Trikots.",
         "date_published": "2026-11-21T10:00:00+01:00"}]}
    (tmp_path / "news.json").write_text(json.dumps(news))
    config = tmp_path / "config.yaml"
    config.write_text("platform: {name: Teststadt}\nstore: {url: 'sqlite:///hub.db'}\nmerchants:\n"
                      "  - id: verein\n    name: Musikverein Harmonie\n    sources:\n"
                      "      - {connector: jsonfeed, url: 'file:news.json'}\n")
    monkeypatch.setenv("HUB_CONFIG", str(config))
    runner = CliRunner()
    assert runner.invoke(app, ["fetch"]).exit_code == 0
    done = runner.invoke(app, ["items", "--search", "Konzert", "--format", "json"])
    assert done.exit_code == 0, done.output
    titles = [json.loads(line)["title"] for line in done.stdout.splitlines()]
    assert titles == ["Zwei Konzerte im Advent", "Neue Trikots"]  # the title match first, though older
    done = runner.invoke(app, ["items", "-q", "Harmonie Trikots", "--format", "json"])
    assert [json.loads(line)["title"] for line in done.stdout.splitlines()] == ["Neue Trikots"]
