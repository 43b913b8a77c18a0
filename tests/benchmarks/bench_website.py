"""Website benchmark: pages per second for the website connector's parse-and-extract step,
on 1,000 local pages of about 100 KB each, and the peak memory.

    .venv/bin/python tests/benchmarks/bench_website.py [--pages 1000] [--profile KIND]

Each page is built in memory (not timed) the way merchants' sites look: a head with inline
CSS and scripts, a navigation, a footer, and in between the content in one of five shapes:
schema.org JSON-LD in an @graph (a business and a dozen events or products), microdata
events, microformats2 h-events, plain HTML read by CSS selectors, and an article that only
has OpenGraph. What is timed is what a parse worker does with a fetched page: the payload
decoded, the page parsed (lxml) and read (extruct's extractors as the page's markers ask,
BeautifulSoup for selectors), items identified, normalized and hashed
(`hub.ingest.parse_payload`). Pages are made and parsed one at a time, so the peak RSS is
the connector's, not a corpus held in memory. --profile KIND prints a cProfile top 25 for
one kind of page instead.

Target (issue 13): at least 100 pages/s on this machine.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from connectors.website import WebsiteOptions  # noqa: E402
from connectors.website_crawl import Payload  # noqa: E402
from connectors.website_items import PageData  # noqa: E402
from hub.ingest import parse_payload  # noqa: E402
from hub.models import FetchState, Retrieved, SourceRef  # noqa: E402

KINDS = ("json-ld", "microdata", "microformats", "selectors", "opengraph")
SHARE = {"json-ld": 4, "microdata": 2, "microformats": 1, "selectors": 2, "opengraph": 1}  # of 10 pages
TARGET_BYTES = 100_000
FETCHED = datetime(2026, 12, 20, 9, tzinfo=UTC)
WORDS = ("Musterstadt Verein Konzert Markt Angebot Woche Familie Kinder Abend Sonntag Stadthalle Eintritt "
         "Programm neu frisch regional Bühne Gäste herzlich willkommen Anmeldung Karten Kasse").split()


def sentence(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def boilerplate(rng: random.Random) -> tuple[str, str, str]:
    """(head extras, navigation, footer): what every page carries besides its content."""
    css = "".join(f".c{n}{{margin:{n % 7}px;padding:{n % 5}px;color:#{n:06x}}}\n" for n in range(400))
    js = "".join(f"function f{n}(a,b){{return a*{n}+b;}}\n" for n in range(500))
    nav = "".join(f'<li class="menu-item"><a href="/seite-{n}">{rng.choice(WORDS)} {n}</a></li>' for n in range(120))
    footer = "".join(f"<p>{sentence(rng, 20)}</p>" for _ in range(25))
    return f"<style>{css}</style><script>{js}</script>", f'<nav><ul class="menu">{nav}</ul></nav>', \
        f'<footer class="fuss">{footer}</footer>'


def when(rng: random.Random) -> datetime:
    return FETCHED + timedelta(days=rng.randrange(1, 60), hours=rng.randrange(8, 14))


def content(kind: str, rng: random.Random, n: int) -> tuple[str, str]:
    """(head, body) of the page's own content."""
    if kind == "json-ld":
        events = [{"@type": "Event" if k % 2 else "Product", "name": f"{sentence(rng, 4)} {n}-{k}",
                   "url": f"https://m{n}.example/e/{k}", "startDate": when(rng).isoformat(),
                   "description": sentence(rng, 40), "image": f"/img/{k}.jpg",
                   "location": {"@type": "Place", "name": "Stadthalle",
                                "address": {"@type": "PostalAddress", "streetAddress": "Markt 1"}},
                   "offers": {"@type": "Offer", "price": f"{rng.randrange(3, 40)},50", "priceCurrency": "EUR"}}
                  for k in range(12)]
        graph = {"@context": "https://schema.org", "@graph": [
            {"@type": "LocalBusiness", "name": f"Laden {n}", "address": {"streetAddress": "Markt 1",
                                                                         "postalCode": "12345"}}, *events]}
        body = "".join(f"<section><h2>{e['name']}</h2><p>{e['description']}</p></section>" for e in events)
        return f'<script type="application/ld+json">{json.dumps(graph)}</script>', body
    if kind == "microdata":
        return "", "".join(
            f'<div itemscope itemtype="https://schema.org/Event"><h2 itemprop="name">{sentence(rng, 4)}</h2>'
            f'<time itemprop="startDate" datetime="{when(rng).isoformat()}">Termin</time>'
            f'<p itemprop="description">{sentence(rng, 40)}</p><a itemprop="url" href="/e/{k}">mehr</a></div>'
            for k in range(12))
    if kind == "microformats":
        return "", '<div class="h-feed">' + "".join(
            f'<div class="h-event"><h2 class="p-name">{sentence(rng, 4)}</h2>'
            f'<time class="dt-start" datetime="{when(rng).isoformat()}">Termin</time>'
            f'<p class="p-summary">{sentence(rng, 40)}</p><a class="u-url" href="/e/{k}">mehr</a></div>'
            for k in range(12)) + "</div>"
    if kind == "selectors":
        return "", "".join(
            f'<article class="termin"><h2><a href="/t/{k}">{sentence(rng, 4)}</a></h2>'
            f'<p class="datum">Sa., {rng.randrange(1, 28)}. Januar, {rng.randrange(10, 21)} Uhr</p>'
            f'<p class="ort">Vereinsheim</p><p class="teaser">{sentence(rng, 40)}</p></article>'
            for k in range(20))
    return (f'<meta property="og:title" content="{sentence(rng, 6)}"><meta property="og:type" content="article">'
            f'<meta property="og:description" content="{sentence(rng, 20)}">'
            f'<meta property="article:published_time" content="{FETCHED.isoformat()}">'), \
        "<article>" + "".join(f"<p>{sentence(rng, 30)}</p>" for _ in range(30)) + "</article>"


def page(kind: str, n: int) -> bytes:
    rng = random.Random(n)
    extras, nav, footer = boilerplate(rng)
    head, body = content(kind, rng, n)
    filler = ""
    html = (f'<!DOCTYPE html><html lang="de"><head><meta charset="utf-8"><title>Seite {n}</title>{extras}{head}'
            f"</head><body>{nav}<main>{body}</main>{{filler}}{footer}</body></html>")
    while len(html) + len(filler) < TARGET_BYTES:  # more of the site's usual text, to about 100 KB
        filler += f'<div class="teaser-box"><p>{sentence(rng, 30)}</p></div>'
    return html.replace("{filler}", filler).encode()


def job(kind: str, n: int) -> tuple[WebsiteOptions, SourceRef, Retrieved]:
    url = f"https://m{n}.example/seite"
    opts = WebsiteOptions(url=url, **({"items": "article.termin", "kind": "event",
                                       "fields": {"title": "h2", "date": ".datum", "location": ".ort",
                                                  "summary": ".teaser"}} if kind == "selectors" else {}))
    payload = Payload(FETCHED, pages={url: PageData(url, url, "text/html", page(kind, n))},
                      groups=[{"page": url, "item_page": False, "follow": [], "previous": []}])
    return opts, SourceRef(f"s{n}", f"m{n}", "de"), Retrieved(payload.encode(), FetchState(), url, "text/html")


def kinds(pages: int) -> list[str]:
    cycle = [k for k in KINDS for _ in range(SHARE[k])]
    return [cycle[n % len(cycle)] for n in range(pages)]


def run(pages: int) -> None:
    per_kind: dict[str, list[float]] = {k: [] for k in KINDS}
    items = size = 0
    for n, kind in enumerate(kinds(pages)):
        opts, ref, got = job(kind, n)  # not timed
        size += len(got.payload)
        started = time.process_time()
        parsed = parse_payload("website", opts, ref, got)
        per_kind[kind].append(time.process_time() - started)
        items += len(parsed.items)
        assert parsed.items, (kind, parsed.warnings)
    total = sum(sum(t) for t in per_kind.values())
    print(f"{pages:,} pages, {size / pages / 1000:.0f} KB each on average, {items:,} items")
    print(f"parse and extract: {total:.2f} s CPU, {pages / total:,.0f} pages/s, {items / total:,.0f} items/s "
          f"(target: 100 pages/s)")
    for kind, times in per_kind.items():
        if times:
            print(f"  {kind:13} {len(times):5} pages  {len(times) / sum(times):7,.0f} pages/s  "
                  f"{1000 * sum(times) / len(times):6.1f} ms/page")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def profile(kind: str, pages: int = 50) -> None:
    work = [job(kind, n) for n in range(pages)]
    prof = cProfile.Profile()
    prof.runcall(lambda: [parse_payload("website", *w) for w in work])
    pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--profile", choices=KINDS, help="print a cProfile top 25 for this kind of page")
    args = ap.parse_args()
    for kind in KINDS:  # warm-up: imports, cleaner caches
        parse_payload("website", *job(kind, 10_000 + KINDS.index(kind)))
    if args.profile:
        profile(args.profile)
    else:
        run(args.pages)


if __name__ == "__main__":
    main()
