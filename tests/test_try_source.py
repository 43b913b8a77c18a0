"""`hub try-source`: the items a source would give and which rule found each field, for a
URL (with selectors to try) or a configured source, for any connector; nothing stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app
from hub.robots import robots
from tests.websitecases import DATA, SiteServer, at_fetch_time

ROOT = Path(__file__).resolve().parent.parent
PLAIN = (DATA / "verein-plain.html").read_bytes()
FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title><link>https://laden.example/</link>
<item><title>Neue Brote</title><guid>b1</guid><link>https://laden.example/brote</link>
<pubDate>Sat, 19 Dec 2026 09:00:00 +0100</pubDate><description>Dinkel und Roggen.</description></item>
</channel></rss>"""


@pytest.fixture(autouse=True)
def _wide_and_fresh(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    robots.clear()
    yield
    robots.clear()


def config(tmp_path: Path) -> Path:
    path = tmp_path / "hub.yaml"
    path.write_text("platform: {timezone: Europe/Berlin}\nstore: {url: 'sqlite:///data/hub.db'}\n"
                    "fetcher: {allow_private_networks: true, host_spacing: 0, retries: 0}\n")
    return path


def hub(*args: str):
    with at_fetch_time():
        return CliRunner().invoke(app, ["try-source", *args])


def lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_selectors_on_a_url_show_which_rule_found_each_field_and_store_nothing(tmp_path):
    with SiteServer({"/termine": PLAIN}) as site:
        done = hub(site.url("/termine"), "-c", str(config(tmp_path)), "--items", "article.termin", "--kind", "event",
                   "--field", "title=h2", "--field", "date=.datum", "--field", "location=.ort", "--field", "end=.bis")
    assert done.exit_code == 0, done.output
    assert "Hallenturnier der F-Jugend" in done.output and "selector .datum" in done.output
    assert "Sa 09.01.2027 10:00" in done.output and "selector .bis" in done.output
    assert "4 Einträge von website; nichts wurde gespeichert" in done.output
    assert not (tmp_path / "data").exists()  # no store, no files


def test_json_lines_carry_the_items_and_their_rules(tmp_path):
    with SiteServer({"/programm": (DATA / "kino-microdata.html").read_bytes()}) as site:
        done = hub(site.url("/programm"), "-c", str(config(tmp_path)), "-f", "json")
    assert done.exit_code == 0, done.output
    found = lines(done.stdout)
    assert len(found) == 4 and all(set(f) >= {"external_id", "title", "event", "rules"} for f in found)
    assert found[0]["rules"]["title"] == "microdata" and found[0]["event"]["start"] == "2027-01-09T17:00:00+01:00"
    assert found[1]["rules"]["location"] == "microdata (Adresse des Anbieters)"
    assert [f["event"]["cancelled"] for f in found] == [False, False, True, False]


def test_a_configured_source_with_a_field_tried_on_top():
    done = hub("--source", "tsv-termine", "-c", str(ROOT / "config.example.yaml"), "-f", "json",
               "--field", "summary=p.ort")
    assert done.exit_code == 0, done.output
    found = lines(done.stdout)
    assert len(found) == 4 and all(f["rules"]["summary"] == "selector p.ort" for f in found)
    assert all(f["rules"]["date"] == "selector .datum" for f in found)


def test_any_connector_a_feed_shows_its_items(tmp_path):
    with SiteServer({"/feed.xml": FEED}) as site:
        done = hub(site.url("/feed.xml"), "-c", str(config(tmp_path)))
        as_json = hub(site.url("/feed.xml"), "-c", str(config(tmp_path)), "-f", "json")
    assert done.exit_code == 0, done.output
    assert "Neue Brote" in done.output and "1 Einträge von feed" in done.output
    [item] = lines(as_json.stdout)
    assert item["external_id"] == "b1" and item["rules"]["title"] == "feed"


def test_a_page_robots_txt_forbids_is_not_fetched_and_the_reason_is_shown(tmp_path):
    with SiteServer({"/termine": PLAIN}, robots=b"User-agent: *\nDisallow: /termine\n") as site:
        done = hub(site.url("/termine"), "-c", str(config(tmp_path)))
        assert site.paths() == ["/robots.txt"]
    assert done.exit_code == 1 and "robots.txt" in done.output and "verbietet" in done.output


def test_a_file_without_a_config_uses_the_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = hub(f"file:{DATA / 'shop-graph.html'}")
    assert done.exit_code == 0, done.output
    assert "Weihnachtsstern" in done.output and "Gärtnerei Grünwald" in done.output  # the shop's profile
    assert "Mo, Di, Mi, Do, Fr 08:00–18:00" in done.output


@pytest.mark.parametrize("args, message", [
    ([], "either a URL or --source"),
    (["https://a.example/", "--source", "x"], "either a URL or --source"),
    (["https://a.example/", "--field", "date"], "NAME=SELECTOR"),
    (["https://a.example/", "--items", "article..x"], "not a valid CSS selector"),
    (["https://a.example/", "-f", "xml"], "table' or 'json"),
])
def test_bad_arguments_say_what_to_write(tmp_path, args, message):
    done = hub(*args, "-c", str(config(tmp_path)))
    assert done.exit_code == 2 and message in done.output


def test_an_unknown_source_lists_the_configured_ones():
    done = hub("--source", "nope", "-c", str(ROOT / "config.example.yaml"))
    assert done.exit_code == 2 and "tsv-termine" in done.output
