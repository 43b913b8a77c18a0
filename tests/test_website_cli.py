"""Website sources through the real CLI and store: `hub fetch`, then `hub sources` says why
a page was not read (robots.txt) and that a redesigned page matched nothing, while its
items stay; `hub items` shows them once however often they are read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.robots import robots
from tests.websitecases import DATA, SiteServer, at_fetch_time

# Timeless: its feeds are dated relative to now and it checks nothing calendar-bound.
pytestmark = pytest.mark.timeless

PLAIN = (DATA / "verein-plain.html").read_bytes()
REDESIGN = (DATA / "verein-plain-redesign.html").read_bytes()


@pytest.fixture(autouse=True)
def _wide_and_fresh(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # rich's tables: one line per row
    robots.clear()
    with at_fetch_time():  # the recorded page's events are to come, whatever the day
        yield
    robots.clear()


def hub(*args: str):
    return CliRunner().invoke(app, list(args))


def town(tmp_path: Path, club: SiteServer, closed: SiteServer) -> Path:
    path = tmp_path / "hub.yaml"
    path.write_text(f"""platform: {{name: Teststadt, timezone: Europe/Berlin}}
store: {{url: 'sqlite:///hub.db'}}
fetcher: {{allow_private_networks: true, host_spacing: 0, retries: 0}}
merchants:
  - id: tsv
    name: TSV
    sources:
      - id: tsv-termine
        connector: website
        url: "{club.url('/termine')}"
        items: "article.termin"
        fields: {{title: h2, link: "a@href", date: .datum, location: .ort, summary: p.teaser, price: .preis}}
        kind: event
  - id: cafe
    name: Café
    sources:
      - {{id: cafe-web, connector: website, url: "{closed.url('/aktionen')}"}}
""")
    return path


def sources(config: Path) -> dict[str, dict]:
    done = hub("sources", "-c", str(config), "-f", "json")
    assert done.exit_code == 0, done.output
    return {s["id"]: s for s in map(json.loads, done.stdout.splitlines())}


def test_robots_reason_and_a_redesign_show_in_hub_sources_and_nothing_is_lost(tmp_path):
    with SiteServer({"/termine": PLAIN}) as club, \
            SiteServer({"/aktionen": PLAIN}, robots=b"User-agent: *\nDisallow: /\n") as closed:
        config = town(tmp_path, club, closed)
        first = hub("fetch", "-c", str(config), "--no-images")
        assert first.exit_code == 1  # the café's source failed
        assert closed.paths() == ["/robots.txt"]
        health = sources(config)
        assert health["cafe-web"]["status"] == "failing" and "robots.txt" in health["cafe-web"]["last_error"]
        assert health["tsv-termine"]["items"] == 4

        club.pages["/termine"] = REDESIGN
        hub("fetch", "-c", str(config), "--no-images", "--source", "tsv-termine")
        health = sources(config)
        table = hub("sources", "-c", str(config)).output
        events = hub("items", "-c", str(config), "--source", "tsv-termine", "-f", "json").stdout.splitlines()

    assert health["tsv-termine"]["status"] == "ok"
    assert any("selectors matched nothing" in w for w in health["tsv-termine"]["warnings"])
    assert "selectors matched nothing" in table and "verbietet" in table
    assert health["tsv-termine"]["items"] == 4  # a redesign deletes nothing
    assert sorted(json.loads(e)["title"] for e in events) == [
        "Abgesagt: Winterwanderung", "Fastnachtsball", "Hallenturnier der F-Jugend", "Jahreshauptversammlung"]


def test_reading_a_page_again_and_again_never_duplicates(tmp_path):
    with SiteServer({"/termine": PLAIN}) as club, SiteServer({"/aktionen": PLAIN}) as other:
        config = town(tmp_path, club, other)
        for _ in range(2):
            hub("fetch", "-c", str(config), "--no-images", "--source", "tsv-termine")
        club.pages["/termine"] = PLAIN.replace(b"12,50", b"14,00")  # a new price: an update, not a new event
        hub("fetch", "-c", str(config), "--no-images", "--source", "tsv-termine")
        records = [json.loads(line) for line in
                   hub("items", "-c", str(config), "--source", "tsv-termine", "-f", "json").stdout.splitlines()]
    assert len(records) == 4
    [ball] = [r for r in records if r["title"] == "Fastnachtsball"]
    assert ball["offer"]["price"] == "14.00"
