"""What ingest looks up of a batch's entries: every (source, id) a payload names, in lists
the databases take (bound-parameter limits), never a source's whole history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hub.models import FetchState, Item, Parsed
from hub.store import FetchOutcome, SourceSpec, Store, _lookups

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_lookups_cover_every_pair_in_bounded_lists():
    named = {"big": {f"e{n}" for n in range(4500)}, "small": {"a", "b"}, "empty": set(),
             **{f"s{n}": {"x"} for n in range(30)}}
    chunks = list(_lookups(named, most=1000))
    asked = {(sid, ext) for sources, ids in chunks for sid in sources for ext in ids}
    wanted = {(sid, ext) for sid, exts in named.items() for ext in exts}
    assert wanted <= asked
    assert all(len(ids) <= 1000 + 1 and len(sources) <= 33 for sources, ids in chunks)


def post(source: str, n: int, days_ago: float) -> Item:
    return Item(source, f"{source}-{n}", "m", title=f"Beitrag {n}", content_html=f"<p>Text {n}</p>",
                content_text=f"Text {n}", published=T0 - timedelta(days=days_ago))


def test_a_long_history_is_kept_and_only_the_window_is_judged(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'hub.db'}")
    store.sync_sources([SourceSpec("blog", "m", "rss")])
    history = tuple(post("blog", n, days_ago=100 + n) for n in range(300))  # read once, long ago
    store.apply([FetchOutcome("blog", T0, "ok", parsed=Parsed(history, complete=False), state=FetchState())])
    window = tuple(post("blog", 1000 + n, days_ago=n) for n in range(5))
    first = store.apply([FetchOutcome("blog", T0, "ok", parsed=Parsed(window), state=FetchState())])
    again = store.apply([FetchOutcome("blog", T0, "ok", parsed=Parsed(window[:2] + window[3:]), state=FetchState())])
    assert len(first[0].new) == 5 and first[0].gone == []
    assert again[0].gone == ["blog-1002"] and again[0].unchanged == 4  # deleted inside the window
    assert store.count_items() == 304  # the history slid out of the window: kept
