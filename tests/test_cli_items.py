"""`hub items` for the project manager: the review queue, approve and hide, split, and one
record's origins and revisions, on a demo-like town read from files."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hub.cli import app

BLOG = """<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>
<item><title>Adventsfrühstück für zwei</title><guid>p1</guid><link>https://laden.example/fruehstueck</link>
<pubDate>Sat, 21 Nov 2026 09:00:00 +0100</pubDate><description>Zwei Kaffee, vier Brötchen, Marmelade: 14,90 €.</description></item>
</channel></rss>"""
PAGE = {"version": "https://jsonfeed.org/version/1.1", "title": "Facebook", "items": [
    {"id": "f1", "url": "https://www.facebook.com/laden/posts/1", "date_published": "2026-11-21T10:00:00+01:00",
     "content_html": '<p>Frühstück im Advent! <a href="https://laden.example/fruehstueck">Mehr</a></p>'}]}
NEWS = {"version": "https://jsonfeed.org/version/1.1", "title": "Verein", "items": [
    {"id": "v1", "title": "Mitgliederversammlung", "content_text": "Alle Mitglieder sind eingeladen.",
     "date_published": "2026-11-20T10:00:00+01:00"},
    {"id": "v2", "title": "Neue Trikots", "content_text": "Die neuen Trikots sind da.",
     "date_published": "2026-11-19T10:00:00+01:00"}]}


def town(tmp_path: Path) -> Path:
    (tmp_path / "blog.xml").write_text(BLOG)
    (tmp_path / "page.json").write_text(json.dumps(PAGE))
    (tmp_path / "news.json").write_text(json.dumps(NEWS))
    path = tmp_path / "config.yaml"
    path.write_text("platform: {name: Teststadt}\nstore: {url: 'sqlite:///hub.db'}\nmerchants:\n"
                    "  - id: laden\n    name: Laden\n    sources:\n"
                    "      - {connector: rss, url: 'file:blog.xml'}\n      - {connector: jsonfeed, url: 'file:page.json'}\n"
                    "  - id: verein\n    name: Verein\n    trust: review\n    sources:\n"
                    "      - {connector: jsonfeed, url: 'file:news.json'}\n")
    return path


def hub(*args: str):
    return CliRunner().invoke(app, list(args))


def records(*args: str) -> list[dict]:
    done = hub("items", *args, "--format", "json")
    assert done.exit_code == 0, done.output
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_review_queue_split_and_history(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_CONFIG", str(town(tmp_path)))
    assert hub("fetch").exit_code == 0

    [merged] = records()
    assert sorted(o["source_id"] for o in merged["origins"]) == ["laden-jsonfeed", "laden-rss"]
    assert merged["merged_because"][0]["rule"] == "links-to"
    pending = records("--pending")
    assert sorted(r["title"] for r in pending) == ["Mitgliederversammlung", "Neue Trikots"]

    first, second = (r["id"] for r in pending)
    assert hub("items", "approve", str(first)).exit_code == 0
    assert hub("items", "hide", str(second)).exit_code == 0
    assert sorted(r["id"] for r in records()) == sorted([merged["id"], first])
    assert [r["id"] for r in records("--hidden")] == [second]

    done = hub("items", "split", str(merged["id"]))
    assert done.exit_code == 0 and "new records" in done.stdout
    assert len(records()) == 3
    history = json.loads(hub("items", "show", str(merged["id"]), "--format", "json").stdout)
    changes = [r["change"] for r in history["revisions"]]
    assert [c for c in changes if c != "updated"] == ["merged", "split"]  # "updated": which origin came first
    assert "revisions" in hub("items", "show", str(merged["id"])).stdout

    assert hub("fetch").exit_code == 0  # a re-fetch does not merge them again
    assert len(records()) == 3
    assert hub("items", "approve", "9999").exit_code == 2
