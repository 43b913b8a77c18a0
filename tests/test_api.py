"""The public JSON API (issue 14) through the real app and store (SQLite and PostgreSQL):
schemas with every field and its type, the pages' filters, events by start, current offers,
search, cursor pagination that meets every record once while new ones arrive, altered
cursors refused, CORS for reading (and not for the admin API or webhooks), ETag/304, JSON
errors; the OpenAPI document (public API only, valid OpenAPI 3.0 structure) and /docs
with Swagger UI from the hub itself.

Dates are relative to now (the suite also runs a year ahead), never to a fixed day."""

from __future__ import annotations

import base64
import re
from datetime import datetime, timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from hub.models import Offer
from tests.publictown import BASE, Town, evening, filled, item

LIST_PATHS = ("/api/v1/items", "/api/v1/events", "/api/v1/offers", "/api/v1/search?q=Advent", "/api/v1/merchants")
ITEM_FIELDS = {"id", "kind", "title", "summary", "url", "original_url", "merchant", "label", "published", "updated",
               "tags", "image", "image_alt", "event", "offer", "origins"}
EVENT_FIELDS = {"start", "end", "all_day", "timezone", "location", "latitude", "longitude", "cancelled"}
OFFER_FIELDS = {"price", "currency", "valid_from", "valid_until"}


@pytest.fixture
def town(store, tmp_path) -> Town:
    return filled(Town(store, tmp_path))


def titles(answer) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [i["title"] for i in answer.json()["items"]]


def moment(text: str) -> datetime:
    """An ISO 8601 time that carries its offset."""
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, text
    return parsed


def path_of(url: str) -> str:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE
    return f"{parts.path}?{parts.query}"


def walk(town: Town, path: str, between=lambda page: None) -> list[dict]:
    """Every item of a listing, page by page along `next`; `between(n)` runs after page n."""
    seen, url, pages = [], path, 0
    while url:
        answer = town.get(url)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        seen += body["items"]
        pages += 1
        between(pages)
        url = path_of(body["next"]) if body["next"] else None
        assert pages < 100
    return seen


# --- schemas ------------------------------------------------------------------------------------

def test_every_item_has_every_field_with_its_type(town):
    items = town.get("/api/v1/items?limit=100").json()["items"]
    assert {i["kind"] for i in items} == {"post", "event", "offer"}
    for i in items:
        assert set(i) == ITEM_FIELDS
        assert isinstance(i["id"], int) and i["url"] == f"{BASE}/items/{i['id']}"
        assert isinstance(i["title"], str) and i["title"] and isinstance(i["summary"], str)
        assert set(i["merchant"]) == {"id", "name", "url"} and i["merchant"]["url"] == f"{BASE}/m/{i['merchant']['id']}"
        moment(i["published"]), moment(i["updated"])
        assert moment(i["updated"]) >= moment(i["published"])
        assert isinstance(i["tags"], list) and all(isinstance(t, str) and not t.startswith("#") for t in i["tags"])
        assert i["origins"] and all(set(o) == {"connector", "url"} for o in i["origins"])
        assert (i["event"] is not None) == (i["kind"] == "event") and (i["offer"] is not None) == (i["kind"] == "offer")
    by_title = {i["title"]: i for i in items}
    stollen = by_title["Stollen frisch & warm"]
    assert stollen["tags"] == ["Advent", "Backen"] and stollen["merchant"]["name"] == "Bäckerei Schmitz & Söhne"
    assert stollen["image"].startswith(f"{BASE}/media/") and "cdn.baeckerei" not in stollen["image"]
    assert stollen["image_alt"] == "Bild: Stollen frisch & warm"
    assert stollen["origins"] == [{"connector": "rss", "url": "https://baeckerei.example/stollen"}]
    assert stollen["original_url"] == "https://baeckerei.example/stollen"
    fest = by_title["Winterfest der Jugend"]["event"]
    assert set(fest) == EVENT_FIELDS and fest["timezone"] == "Europe/Berlin" and fest["location"] == "Stadthalle"
    start = moment(fest["start"])
    assert start.hour == 19 and start.utcoffset() in (timedelta(hours=1), timedelta(hours=2))  # Berlin time
    assert moment(fest["end"]) - moment(fest["start"]) == timedelta(hours=2) and fest["cancelled"] is False
    sale = by_title["Winterschlussverkauf"]
    assert set(sale["offer"]) == OFFER_FIELDS
    assert sale["offer"]["price"] == "19.90" and sale["offer"]["currency"] == "EUR"
    assert sale["label"] == "Anzeige" and stollen["label"] is None
    assert moment(by_title["Brot des Monats"]["offer"]["valid_until"]) > moment(by_title["Brot des Monats"]["published"])


def test_one_item_with_its_text_and_images_on_the_hub(town):
    first = town.get("/api/v1/items?tag=backen").json()["items"][0]
    answer = town.get(f"/api/v1/items/{first['id']}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    detail = answer.json()
    assert set(detail) == ITEM_FIELDS | {"content_html"}
    assert {k: v for k, v in detail.items() if k != "content_html"} == first
    assert "Jetzt da" in detail["content_html"] and "cdn.baeckerei.example" not in detail["content_html"]
    assert re.search(rf'<img src="{re.escape(BASE)}/media/[^"]+"', detail["content_html"])


def test_unknown_or_removed_records_are_404_json(town):
    missing = town.get("/api/v1/items/987654")
    assert missing.status_code == 404 and "987654" in missing.json()["detail"]
    bericht = town.get("/api/v1/items?merchant=tsv&kind=post").json()["items"][0]
    town.fetch("tsv", gone=("bericht",))
    assert town.get(f"/api/v1/items/{bericht['id']}").status_code == 404
    assert "Bericht vom Heimspiel" not in titles(town.get("/api/v1/items?limit=100"))
    assert town.get("/api/v1/merchants/niemand").status_code == 404
    assert town.get("/api/v1/items/abc").status_code == 400


# --- what each listing shows ----------------------------------------------------------------------

def test_items_newest_first_without_expired_offers_or_past_events(town):
    shown = titles(town.get("/api/v1/items?limit=100"))
    assert shown[:3] == ["Stollen frisch & warm", "Winterfest der Jugend", "Sommerfest am Sportplatz"]
    assert "Osterbrot (abgelaufen)" not in shown and "Saisonabschluss" not in shown
    published = [moment(i["published"]) for i in town.get("/api/v1/items?limit=100").json()["items"]]
    assert published == sorted(published, reverse=True)


def test_events_are_upcoming_by_start_and_von_bis_choose_the_span(town):
    events = town.get("/api/v1/events").json()["items"]
    assert [e["title"] for e in events] == ["Winterfest der Jugend", "Weihnachtsmarkt", "Hallenturnier",
                                            "Sommerfest am Sportplatz"]
    assert events[2]["event"]["cancelled"] is True and events[1]["event"]["all_day"] is True
    starts = [moment(e["event"]["start"]) for e in events]
    assert starts == sorted(starts)
    week = f"von={(town.today - timedelta(days=14)).isoformat()}&bis={(town.today + timedelta(days=4)).isoformat()}"
    assert titles(town.get(f"/api/v1/events?{week}")) == ["Saisonabschluss", "Winterfest der Jugend", "Weihnachtsmarkt"]
    assert titles(town.get(f"/api/v1/events?von={(town.today + timedelta(days=5)).isoformat()}")) == [
        "Hallenturnier", "Sommerfest am Sportplatz"]
    assert titles(town.get("/api/v1/events?kind=offer")) == []
    yesterday = town.today - timedelta(days=1)
    backwards = town.get(f"/api/v1/events?von={town.today.isoformat()}&bis={yesterday.isoformat()}")
    assert backwards.status_code == 400 and "bis" in backwards.json()["detail"]
    assert town.get("/api/v1/events?von=24.12.").status_code == 400


def test_offers_are_the_current_ones(town):
    assert titles(town.get("/api/v1/offers")) == ["Brot des Monats", "Winterschlussverkauf"]
    assert titles(town.get("/api/v1/offers?category=handel")) == ["Winterschlussverkauf"]


@pytest.mark.parametrize("query, expected", [
    ("category=vereine&kind=post", ["Bericht vom Heimspiel"]),
    ("district=altstadt&tag=advent", ["Stollen frisch & warm", "Winterschlussverkauf"]),
    ("merchant=rathaus&merchant=modehaus", ["Winterschlussverkauf", "Weihnachtsmarkt"]),
    ("tag=%23Advent&kind=event", ["Winterfest der Jugend", "Weihnachtsmarkt"]),
    ("category=niemand", []),
])
def test_the_pages_filters_combine(town, query, expected):
    assert titles(town.get(f"/api/v1/items?{query}")) == expected


def test_an_unknown_kind_or_a_bad_limit_is_a_400_that_says_what(town):
    kind = town.get("/api/v1/items?kind=termin")
    assert kind.status_code == 400 and "termin" in kind.json()["detail"]
    for bad in ("0", "-3", "viele"):
        answer = town.get(f"/api/v1/items?limit={bad}")
        assert answer.status_code == 400 and "limit" in answer.json()["detail"], bad


def test_limit_defaults_to_20_and_is_capped_at_100(town):
    town.fetch("rathaus", *[item("rathaus", f"notiz-{n}", f"Notiz {n}", hours_ago=10 + n) for n in range(110)])
    assert len(town.get("/api/v1/items").json()["items"]) == 20
    capped = town.get("/api/v1/items?limit=1000").json()
    assert len(capped["items"]) == 100 and capped["limit"] == 100 and capped["next"]


def test_search_needs_words_and_takes_the_filters(town):
    assert titles(town.get("/api/v1/search?q=Sportplatz")) == ["Sommerfest am Sportplatz"]
    assert titles(town.get("/api/v1/search?q=jugend%20winterfest")) == ["Winterfest der Jugend"]
    assert titles(town.get("/api/v1/search?q=Winterschlussverkauf&category=handel")) == ["Winterschlussverkauf"]
    assert titles(town.get("/api/v1/search?q=Winterschlussverkauf&category=vereine")) == []
    for empty in ("", "?q=", "?q=%20%20"):
        answer = town.get(f"/api/v1/search{empty}")
        assert answer.status_code == 400 and "q" in answer.json()["detail"]


def test_merchants_with_their_channels_and_feeds(town):
    body = town.get("/api/v1/merchants").json()
    assert [m["id"] for m in body["items"]] == ["baeckerei", "modehaus", "rathaus", "tsv"]  # by name
    baeckerei = body["items"][0]
    assert baeckerei == {"id": "baeckerei", "name": "Bäckerei Schmitz & Söhne", "url": f"{BASE}/m/baeckerei",
                         "category": "gastronomie", "district": "Altstadt", "website": "https://baeckerei.example/",
                         "label": None, "channels": ["jsonfeed", "rss"],
                         "feeds": {"atom": f"{BASE}/feed.atom?merchant=baeckerei",
                                   "rss": f"{BASE}/feed.rss?merchant=baeckerei",
                                   "json_feed": f"{BASE}/feed.json?merchant=baeckerei",
                                   "ical": f"{BASE}/events.ics?merchant=baeckerei"}}
    assert town.get("/api/v1/merchants/baeckerei").json() == baeckerei
    altstadt = town.get("/api/v1/merchants?district=altstadt").json()["items"]
    assert [m["id"] for m in altstadt] == ["baeckerei", "modehaus"]
    walked = walk(town, "/api/v1/merchants?limit=1")
    assert [m["id"] for m in walked] == ["baeckerei", "modehaus", "rathaus", "tsv"]


# --- cursor pagination ----------------------------------------------------------------------------

def test_a_walk_meets_every_record_once_while_new_ones_arrive(town):
    town.fetch("rathaus", *[item("rathaus", f"meldung-{n}", f"Meldung {n}", hours_ago=9 + n) for n in range(23)])
    before = {i["id"] for i in town.get("/api/v1/items?limit=100").json()["items"]}
    assert len(before) == 31

    def arrive(page: int) -> None:  # a newer post, and one published long ago but fetched only now
        town.fetch("tsv", item("tsv", f"neu-{page}", f"Neu {page}", hours_ago=0.1),
                   item("tsv", f"spaet-{page}", f"Spät gefunden {page}", hours_ago=500 + page))

    walked = walk(town, "/api/v1/items?limit=5", arrive)
    ids = [i["id"] for i in walked]
    assert len(ids) == len(set(ids))  # nothing twice
    assert before <= set(ids)  # nothing that was there is skipped
    assert not any(i["title"].startswith("Neu ") for i in walked)  # newer than the walk's start: not in it
    published = [moment(i["published"]) for i in walked]
    assert published == sorted(published, reverse=True)


def test_the_agenda_walks_by_start(town):
    town.fetch("tsv", *[item("tsv", f"training-{n}", f"Training {n}", event=evening(town.today + timedelta(days=n % 12),
                                                                                     hour=10 + n % 9))
                        for n in range(17)])
    walked = walk(town, "/api/v1/events?limit=3&category=vereine")
    assert len(walked) == 20 and len({e["id"] for e in walked}) == 20
    assert [moment(e["event"]["start"]) for e in walked] == sorted(moment(e["event"]["start"]) for e in walked)


def test_next_links_keep_the_filters_and_the_cursor_is_url_safe(town):
    body = town.get("/api/v1/items?tag=advent&limit=1&category=gastronomie&category=handel").json()
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["tag"] == ["advent"] and query["category"] == ["gastronomie", "handel"] and query["limit"] == ["1"]
    assert query["cursor"] == [body["next_cursor"]] and re.fullmatch(r"[A-Za-z0-9_-]+", body["next_cursor"])
    assert town.get(path_of(body["next"])).json()["next"] is None
    reordered = f"/api/v1/items?tag=advent&limit=1&category=handel&category=gastronomie&cursor={body['next_cursor']}"
    last = town.get(reordered)
    assert titles(last) == ["Winterschlussverkauf"]  # the same filters in another order are the same query


def test_an_altered_cursor_is_refused(town):
    body = town.get("/api/v1/items?limit=2").json()
    cursor = body["next_cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-12] ^= 1  # one bit of the position
    forged = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    flipped = cursor[:10] + ("A" if cursor[10] != "A" else "B") + cursor[11:]
    for bad in (forged, flipped, cursor[:-3], "x", "!!!", "eyJ9"):
        answer = town.get(f"/api/v1/items?limit=2&cursor={bad}")
        assert answer.status_code == 400, bad
        assert "cursor" in answer.json()["detail"] and answer.headers["access-control-allow-origin"] == "*"
    elsewhere = town.get(f"/api/v1/items?limit=2&kind=event&cursor={cursor}")
    assert elsewhere.status_code == 400 and "andere" in elsewhere.json()["detail"]
    assert town.get(f"/api/v1/offers?limit=2&cursor={cursor}").status_code == 400
    assert town.get(f"/api/v1/items?limit=2&cursor={cursor}").status_code == 200


# --- HTTP: CORS, caching, HEAD ---------------------------------------------------------------------

@pytest.mark.dialect_free
@pytest.mark.parametrize("path", LIST_PATHS + ("/api/v1/merchants/tsv",))
def test_any_site_may_read_without_credentials(town, path):
    answer = town.get(path, Origin="https://schule.example")
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers and "set-cookie" not in answer.headers
    preflight = town.client.options(path, headers={"Origin": "https://schule.example",
                                                   "Access-Control-Request-Method": "GET",
                                                   "Access-Control-Request-Headers": "if-none-match"})
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == "*"
    methods = preflight.headers["access-control-allow-methods"].replace(" ", "").split(",")
    assert set(methods) == {"GET", "HEAD", "OPTIONS"}
    assert "if-none-match" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers


def test_no_cors_beyond_the_public_api(town):
    for path in ("/", "/hooks/facebook", "/api/v1/admin/health", "/healthz", "/admin"):
        answer = town.get(path, Origin="https://fremd.example")
        assert "access-control-allow-origin" not in answer.headers, path
        preflight = town.client.options(path, headers={"Origin": "https://fremd.example",
                                                       "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in preflight.headers, path
    assert town.client.post("/api/v1/items", json={}).status_code == 405


@pytest.mark.parametrize("path", LIST_PATHS + ("/api/v1/merchants/tsv",))
def test_an_unchanged_answer_is_304_by_etag(town, path):
    first = town.get(path)
    etag = first.headers["etag"]
    assert first.headers["cache-control"].startswith("public")
    again = town.get(path, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert town.get(path, **{"If-None-Match": 'W/"anders"'}).status_code == 200


def test_a_change_changes_the_etag(town):
    first = town.get("/api/v1/items")
    detail = town.get(f"/api/v1/items/{first.json()['items'][0]['id']}")
    town.fetch("baeckerei", item("baeckerei", "stollen", "Stollen frisch & warm – jetzt mit Mandeln", image=True))
    changed = town.get("/api/v1/items", **{"If-None-Match": first.headers["etag"]})
    assert changed.status_code == 200 and changed.headers["etag"] != first.headers["etag"]
    assert changed.json()["items"][0]["title"].endswith("Mandeln")
    again = town.get(f"/api/v1/items/{detail.json()['id']}", **{"If-None-Match": detail.headers["etag"]})
    assert again.status_code == 200


def test_head_answers_like_get_without_a_body(town):
    get, head = town.get("/api/v1/events"), town.client.head("/api/v1/events")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["etag"] == get.headers["etag"] and head.headers["access-control-allow-origin"] == "*"


# --- the description: /openapi.json and /docs -----------------------------------------------------

SCHEMA_KEYS = {"title", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength",
               "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxProperties", "minProperties",
               "required", "enum", "type", "not", "allOf", "oneOf", "anyOf", "items", "properties",
               "additionalProperties", "description", "format", "default", "nullable", "discriminator", "readOnly",
               "writeOnly", "example", "externalDocs", "deprecated", "xml"}
TYPES = {"array", "boolean", "integer", "number", "object", "string"}


def schema_problems(node, where: str, document: dict) -> list[str]:
    """What makes `node` no OpenAPI 3.0 Schema Object (or Reference) of `document`."""
    if "$ref" in node:
        target = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target.get(part, {})
        return [] if target else [f"{where}: unresolved {node['$ref']}"]
    problems = [f"{where}: {k}" for k in set(node) - SCHEMA_KEYS if not k.startswith("x-")]
    if "type" in node and node["type"] not in TYPES:
        problems.append(f"{where}: type {node['type']}")
    for key in ("allOf", "oneOf", "anyOf"):
        for n, sub in enumerate(node.get(key, [])):
            problems += schema_problems(sub, f"{where}.{key}[{n}]", document)
    for name, sub in node.get("properties", {}).items():
        problems += schema_problems(sub, f"{where}.{name}", document)
    if "items" in node:
        problems += schema_problems(node["items"], f"{where}[]", document)
    return problems


def test_openapi_describes_the_public_api_and_nothing_else(town):
    answer = town.get("/openapi.json")
    assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"
    document = answer.json()
    assert re.fullmatch(r"3\.0\.\d", document["openapi"]) and document["info"]["title"] and document["info"]["version"]
    assert set(document["paths"]) == {"/api/v1/items", "/api/v1/items/{record_id}", "/api/v1/events",
                                      "/api/v1/offers", "/api/v1/search", "/api/v1/merchants",
                                      "/api/v1/merchants/{merchant_id}"}
    problems = []
    for path, operations in document["paths"].items():
        assert set(operations) == {"get"}, path  # HEAD and the preflight are not operations of their own
        get = operations["get"]
        assert get["responses"]["200"]["content"]["application/json"]["schema"]
        assert "400" in get["responses"] and "422" not in get["responses"]
        for parameter in get.get("parameters", []):
            assert parameter["in"] in ("query", "path") and parameter["name"]
            problems += schema_problems(parameter["schema"], f"{path} {parameter['name']}", document)
    for name, schema in document["components"]["schemas"].items():
        problems += schema_problems(schema, name, document)
    assert problems == []
    item_out = document["components"]["schemas"]["ItemOut"]
    assert set(item_out["required"]) == ITEM_FIELDS == set(item_out["properties"])
    assert item_out["properties"]["published"]["format"] == "date-time"
    events = {p["name"] for p in document["paths"]["/api/v1/events"]["get"]["parameters"]}
    assert events >= {"merchant", "category", "district", "kind", "tag", "von", "bis", "limit", "cursor"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls, self.inline_scripts, self._in_script = [], 0, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("src", "href", "data-openapi"):
            if attrs.get(key):
                self.urls.append(attrs[key])
        if tag == "script" and not attrs.get("src"):
            self.inline_scripts += 1
        if tag == "style" or "style" in attrs:
            self.inline_scripts += 1  # an inline style: as forbidden as an inline script


def test_docs_load_everything_from_the_hub_itself(town):
    docs = town.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    csp = docs.headers["content-security-policy"]
    assert "http" not in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    found = _Assets()
    found.feed(docs.text)
    assert found.inline_scripts == 0
    assert any(u.endswith(".js") for u in found.urls) and any(u.endswith(".css") for u in found.urls)
    for url in found.urls:
        assert url.startswith("/") and not url.startswith("//"), url  # same origin
        answer = town.get(url)
        assert answer.status_code == 200 and answer.content, url
    assert "swagger-ui" in town.get(next(u for u in found.urls if u.endswith("bundle.js"))).text[:5000].lower()
    start = town.get("/static/swagger-init.js").text
    assert "SwaggerUIBundle" in start and "validatorUrl: null" in start
    assert town.get("/docs/assets/../../config.py").status_code == 404
    assert town.get("/docs/assets/index.html").status_code == 404  # only the files the page needs


def test_an_offer_edited_to_end_yesterday_leaves_the_offers(town):
    town.fetch("modehaus", item("modehaus", "sale", "Winterschlussverkauf", hours_ago=7, tags=("Advent",),
                                offer=Offer(price="19.90", currency="EUR", valid_until=town.now - timedelta(days=1))))
    assert titles(town.get("/api/v1/offers")) == ["Brot des Monats"]


def test_a_summary_is_the_start_of_the_text_when_the_source_gives_none(town):
    long = " ".join(f"Satz {n} über das Vereinsleben." for n in range(40))
    town.fetch("tsv", item("tsv", "lang", "Jahresbericht", html=f"<p>{long}</p>", hours_ago=0.5))
    shown = town.get("/api/v1/items?limit=1").json()["items"][0]
    assert shown["title"] == "Jahresbericht" and shown["summary"].startswith("Satz 0 über das Vereinsleben.")
    assert shown["summary"].endswith(" …") and len(shown["summary"]) <= 302 and long.startswith(shown["summary"][:-2])
    everything = town.get("/api/v1/items?limit=100").json()["items"]
    short = next(i for i in everything if i["title"] == "Bericht vom Heimspiel")
    assert short["summary"] == "Bericht vom Heimspiel: alles Weitere bei uns."
