"""`hub try-source`: what a source would give, without storing anything.

    hub try-source https://tsv-musterstadt.example/termine --items article.termin --field date=.datum
    hub try-source --source tsv-musterstadt-website -f json

It fetches the source once (through the hub's fetcher: robots.txt, User-Agent, SSRF guard,
size limits, as `hub fetch` would), parses and normalizes what came back, and prints the
items with, for each field, the rule that found it ("title: json-ld", "date: selector
.datum"). No store is opened and no fetch state is kept: trying twice fetches twice.

A URL without `--connector` is probed once: a feed goes to the feed reader, a calendar to
the calendar connector, anything else to the website connector. `--items`, `--field`,
`--kind`, `--follow`, `--max-pages` and `--sitemap` try website options (for `--source`,
on top of the configured ones). Exit codes: 0 read (even if nothing was found), 1 the
source could not be read, 2 bad arguments or config.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Optional
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError
from rich.table import Table

from hub import plugins
from hub.cli.common import err, out, settings_from
from hub.config import Settings
from hub.errors import ConnectorError, HubError
from hub.http import Fetcher
from hub.models import FetchState, Item, Parsed, SourceRef
from hub.normalize import normalize_parsed

ConfigOpt = Annotated[Path, typer.Option("-c", "--config", envvar="HUB_CONFIG",
                                         help="The YAML config file (fetcher settings, time zone, --source).")]
_WEBSITE_KEYS = ("items", "fields", "kind", "follow", "max_pages", "sitemap")
_FIELD_LABELS = (("date", "Datum"), ("end", "Ende"), ("location", "Ort"), ("price", "Preis"), ("link", "Link"),
                 ("image", "Bild"), ("summary", "Text"), ("content", "Volltext"))


def try_source(
    url: Annotated[Optional[str], typer.Argument(help="The page, feed or calendar to try.")] = None,
    source: Annotated[Optional[str], typer.Option("--source", "-s", help="A configured source's id instead of a URL.")] = None,
    config: ConfigOpt = Path("config.yaml"),
    format: Annotated[str, typer.Option("--format", "-f", help="table or json (one object per line).")] = "table",
    connector: Annotated[Optional[str], typer.Option(help="Connector for a URL (default: detected).")] = None,
    items: Annotated[Optional[str], typer.Option(help="Website: CSS selector of one item.")] = None,
    field: Annotated[Optional[list[str]], typer.Option("--field", help="Website: NAME=SELECTOR, e.g. date=.datum "
                                                       "or link=a@href (repeatable).")] = None,
    kind: Annotated[Optional[str], typer.Option(help="Website: post, event or offer.")] = None,
    follow: Annotated[Optional[bool], typer.Option("--follow/--no-follow", help="Website: read each item's own page.")] = None,
    max_pages: Annotated[Optional[int], typer.Option(help="Website: crawl budget.")] = None,
    sitemap: Annotated[Optional[bool], typer.Option("--sitemap/--no-sitemap", help="Website: walk sitemap.xml.")] = None,
) -> None:
    """Fetch and parse one source and show the items it would give, and which rule found
    each field; nothing is stored."""
    if format not in ("table", "json"):
        _fail("--format is 'table' or 'json'")
    if (url is None) == (source is None):
        _fail("give either a URL or --source ID (`hub sources` lists the configured ones)")
    settings = _settings(config, needed=source is not None)
    overrides = _overrides(items, field, kind, follow, max_pages, sitemap)
    try:
        result = asyncio.run(_try(settings, url, source, connector, overrides))
    except ConnectorError as exc:
        err.print(f"error: {exc}", style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    if format == "json":
        _print_json(result)
    else:
        _print_table(result)


class _Result:
    def __init__(self, source_id: str, connector: str, parsed: Parsed, rules: list[dict[str, str]],
                 business: Any, zone: str) -> None:
        self.source_id = source_id
        self.connector = connector
        self.parsed = parsed
        self.rules = rules
        self.business = business
        self.zone = zone


async def _try(settings: Settings, url: str | None, source_id: str | None, connector: str | None,
               overrides: dict[str, Any]) -> _Result:
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        if source_id is not None:
            merchant, source = _configured(settings, source_id)
            name, options = source.connector, source.options
            ref = SourceRef(source.id, merchant.id, source.language or merchant.language or settings.platform.language,
                            settings.platform.timezone)
        else:
            name = connector or ("website" if overrides else await _detect(url, fetcher))
            options = None
            ref = SourceRef("try-source", "try-source", settings.platform.language, settings.platform.timezone)
        plugin = _plugin(name)
        options = _options(plugin, name, options, url, overrides, settings)
        instance = plugin()
        got = await instance.retrieve(options, FetchState(), fetcher)
    explain = getattr(instance, "parse_explained", None)
    if explain is not None:
        explained = explain(options, ref, got)
        parsed, rules, business = explained.parsed, explained.rules, explained.business
    else:
        parsed, rules, business = instance.parse(options, ref, got), [], None
    # As `hub fetch` stores them: normalized (language, events announced in posts, cancellations).
    parsed = normalize_parsed(parsed, ref.timezone)
    return _Result(ref.id, name, parsed, rules or [{} for _ in parsed.items], business, ref.timezone)


def _settings(path: Path, needed: bool) -> Settings:
    """The config if there is one; a URL can be tried without (the hub's defaults)."""
    if path.exists() or needed:
        return settings_from(path)
    err.print(f"{path} not found: trying with the hub's default settings (-c FILE for yours)", style="yellow")
    return Settings()


def _configured(settings: Settings, source_id: str):
    for merchant, source in settings.sources():
        if source.id == source_id:
            return merchant, source
    known = ", ".join(s.id for _, s in settings.sources()) or "none"
    _fail(f"no source '{source_id}' in the config (configured: {known})")


def _plugin(name: str) -> Any:
    try:
        return plugins.connector(name)
    except KeyError:
        _fail(f"unknown connector '{name}' (known: {', '.join(plugins.names('hub.connectors'))})")


def _options(plugin: Any, name: str, configured: Any, url: str | None, overrides: dict[str, Any],
             settings: Settings) -> Any:
    """The options to try: the configured ones (or just the URL) with the overrides on top,
    validated like the config's and completed by the connector's `settle`."""
    data = configured.model_dump(exclude_none=True) if configured is not None else {"url": url}
    if overrides and name != "website":
        _fail(f"--items, --field, --kind, --follow, --max-pages and --sitemap are website options; "
              f"this source uses the {name} connector")
    if "fields" in overrides:
        overrides = {**overrides, "fields": {**(data.get("fields") or {}), **overrides["fields"]}}
    try:
        options = plugin.Options.model_validate({**data, **overrides})
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg'].removeprefix('Value error, ')}"
                        for e in exc.errors()))
    if configured is not None and not overrides:
        return configured  # already settled by the config
    settle = getattr(plugin, "settle", None)
    if settle is not None:
        options, _ = settle(options, settings, date.today())
    return options


async def _detect(url: str, fetcher: Fetcher) -> str:
    """The connector for a URL: by its scheme or ending, else by one look at what it serves."""
    lowered = url.lower()
    names = plugins.names("hub.connectors")
    if lowered.startswith("webcal:") or lowered.split("?")[0].endswith(".ics"):
        return "ical" if "ical" in names else "website"
    if not lowered.startswith(("http:", "https:", "file:")):
        _fail("a URL starts with https://, http:// or file: (webcal:// for a calendar)")
    from hub.robots import AGENT, robots

    rules = await robots.rules(fetcher, url)
    if rules is not None and not rules.allows(url, AGENT):
        return "website"  # whose crawl says why it may not read the page
    try:
        response = await fetcher.get(url, max_bytes=512 * 1024)
    except HubError:
        return "website"  # whose retrieve reports the problem properly
    head = response.body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"begin:vcalendar" in head[:64] or response.content_type == "text/calendar":
        return "ical" if "ical" in names else "website"
    if head.startswith(b"{") and b"jsonfeed.org" in response.body[:4096]:
        return "feed"
    if head.startswith(b"<") and any(tag in head for tag in (b"<rss", b"<feed", b"<rdf:rdf")):
        return "feed"
    return "website"


def _overrides(items: str | None, fields: list[str] | None, kind: str | None, follow: bool | None,
               max_pages: int | None, sitemap: bool | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if fields:
        out["fields"] = {}
        for spec in fields:
            name, sep, selector = spec.partition("=")
            if not sep or not name.strip():
                _fail(f"--field {spec!r}: write it as NAME=SELECTOR, e.g. --field date=.datum")
            out["fields"][name.strip()] = selector.strip()
    for key, value in (("items", items), ("kind", kind), ("follow", follow), ("max_pages", max_pages),
                       ("sitemap", sitemap)):
        if value is not None:
            out[key] = value
    return out


# --- output -------------------------------------------------------------------------------------

def _print_json(result: _Result) -> None:
    for item, rules in zip(result.parsed.items, result.rules):
        record = {**item.to_dict(), "rules": rules or _generic_rules(item, result.connector, ZoneInfo(result.zone))}
        sys.stdout.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    for warning in result.parsed.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)


def _print_table(result: _Result) -> None:
    parsed = result.parsed
    zone = ZoneInfo(result.zone)
    for n, (item, rules) in enumerate(zip(parsed.items, result.rules), start=1):
        table = Table(title=f"{n}. {item.title}  [{item.kind.value}]", title_justify="left", show_header=False,
                      box=None, padding=(0, 1))
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        table.add_column("rule", style="cyan")
        table.add_row("Schlüssel", item.external_id, "")
        table.add_row("Titel", item.title, rules.get("title", result.connector))
        for name, label in _FIELD_LABELS:
            value = _value(item, name, zone)
            if value:
                table.add_row(label, value, rules.get(name, "" if rules else result.connector))
        if item.event and item.event.cancelled:
            table.add_row("Status", "abgesagt", "")
        out.print(table)
        out.print()
    if not parsed.items:
        out.print("keine Einträge gefunden", style="yellow")
    if result.business is not None:
        _print_business(result.business)
    for warning in parsed.warnings:
        err.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
    if parsed.gone:
        out.print(f"bei der Quelle nicht mehr vorhanden (würde gelöscht): {', '.join(parsed.gone)}")
    out.print(f"{len(parsed.items)} Einträge von {result.connector}; nichts wurde gespeichert")


def _generic_rules(item: Item, connector: str, zone: ZoneInfo) -> dict[str, str]:
    """A connector that does not say which rule found what: its name, for the fields it filled."""
    found = {"title": item.title, **{name: _value(item, name, zone) for name, _ in _FIELD_LABELS}}
    return {name: connector for name, value in found.items() if value}


def _print_business(business: Any) -> None:
    table = Table(title=f"Anbieter ({business.rule})", title_justify="left", show_header=False, box=None,
                  padding=(0, 1))
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for label, value in (("Name", business.name), ("Adresse", business.address),
                         ("Koordinaten", f"{business.latitude}, {business.longitude}" if business.latitude is not None
                          else ""), ("Telefon", business.telephone), ("Web", business.url),
                         ("Öffnungszeiten", "; ".join(business.opening_hours))):
        if value:
            table.add_row(label, value)
    out.print(table)


def _value(item: Item, name: str, zone: ZoneInfo) -> str:
    event, offer = item.event, item.offer
    if name == "date":
        if event is not None:
            return _when(event.start, zone, event.all_day)
        if offer is not None and offer.valid_from:
            return _when(offer.valid_from, zone, False)
        return _when(item.published, zone, False)
    if name == "end":
        if event is not None and event.end:
            return _when(event.end, zone, event.all_day)
        return _when(offer.valid_until, zone, False) if offer is not None and offer.valid_until else ""
    if name == "location":
        where = event.location if event is not None else None
        if event is not None and event.latitude is not None:
            where = f"{where or ''} ({event.latitude}, {event.longitude})".strip()
        return where or ""
    if name == "price":
        return " ".join(filter(None, [offer.price, offer.currency])) if offer is not None and offer.price else ""
    if name == "link":
        return item.url or ""
    if name == "image":
        return ", ".join(m.url for m in item.media)
    if name == "summary":
        return item.summary
    if name == "content":
        return f"{len(item.content_text)} Zeichen" if item.content_text and item.content_text != item.summary else ""
    return ""


_WEEKDAYS = ("Mo", "Di", "Mi", "Do", "Fr", "Sa", "So")


def _when(moment: datetime | None, zone: ZoneInfo, all_day: bool) -> str:
    if moment is None:
        return ""
    local = moment.astimezone(zone)
    day = f"{_WEEKDAYS[local.weekday()]} {local:%d.%m.%Y}"
    return day if all_day else f"{day} {local:%H:%M}"


def _fail(message: str) -> None:
    err.print(f"error: {message}", style="red", markup=False, highlight=False)
    raise typer.Exit(2)
