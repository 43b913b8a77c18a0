"""Web benchmark: the resident platform under load, with 1,000,000 records in SQLite.

    .venv/bin/python tests/benchmarks/bench_web.py [--records 1000000] [--seconds 30] [--connections 50]

Builds (or reuses, from --cache) a SQLite store of N records of 1,000 merchants through the
real write path (`Store.apply`: identity, records, tags, the search index), dated around
today: 70 % posts over the last year, 20 % events over the next two months, 10 % offers.
Then starts `hub serve` on loopback and loads it with `wrk` (Debian's package, installed
here when missing) for each URL, one after the other, and prints requests per second,
p50/p99 latency and errors for

- `/`, `/events`, `/search?q=...` and `/feed.atom`;
- a static file of the same size as `/`, from the same server, in the same run.

Targets (issue 14), on this 2-core machine where wrk and the server share the cores: `/` at
least 1,000 requests/s, p99 under 100 ms and within 3x of the static file; search p99 under
200 ms; zero errors.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub.models import Event, FetchState, Item, Kind, Offer, Parsed  # noqa: E402
from hub.store import FetchOutcome, SourceSpec, Store  # noqa: E402
from tests.benchmarks.corpus import WORDS  # noqa: E402

MERCHANTS = 1_000
CATEGORIES = ("gastronomie", "handel", "vereine", "kultur", "verwaltung")
DISTRICTS = ("Altstadt", "Nord", "Süd", "Oberdorf")
STATIC = ROOT / "hub" / "web" / "static"
PATHS = ("/", "/events", "/search?q=Konzerte", "/feed.atom")
BATCH = 5_000


def wrk() -> str:
    """The load generator; Debian's `wrk`, installed on first use."""
    found = shutil.which("wrk")
    if found:
        return found
    print("installing Debian's wrk (the load generator) ...", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk is missing and could not be installed (apt-get install wrk, as root)")
    return found


def write_config(folder: Path, db: Path) -> Path:
    lines = ["platform: {name: Lasttest, base_url: 'http://127.0.0.1:8000', timezone: Europe/Berlin}",
             f"store: {{url: 'sqlite:///{db}'}}", "merchants:"]
    for m in range(MERCHANTS):
        lines += [f"  - id: m{m}", f"    name: Händler {m}", f"    category: {CATEGORIES[m % len(CATEGORIES)]}",
                  f"    district: {DISTRICTS[m % len(DISTRICTS)]}",
                  f"    sources: [{{connector: rss, url: 'file:feeds/m{m}.xml', id: m{m}-blog}}]"]
    lines += ["channels:", "  - {id: platform, renderer: platform}"]
    path = folder / "config.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def item(rng: random.Random, merchant: int, n: int, now: datetime) -> Item:
    words = [rng.choice(WORDS) for _ in range(rng.randint(30, 90))]
    body = " ".join(words)
    title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))).capitalize() + f" {n}"
    roll = rng.random()
    kind, event, offer = Kind.POST, None, None
    published = now - timedelta(seconds=rng.uniform(0, 365 * 86400))
    if roll < 0.2:
        start = (now + timedelta(days=rng.uniform(0, 60))).replace(minute=0, second=0, microsecond=0)
        kind, published = Kind.EVENT, now - timedelta(days=rng.uniform(0, 30))
        event = Event(start=start, end=start + timedelta(hours=2), timezone="Europe/Berlin",
                      location=f"{rng.choice(WORDS)}halle")
    elif roll < 0.3:
        kind, published = Kind.OFFER, now - timedelta(days=rng.uniform(0, 30))
        offer = Offer(price=f"{rng.randint(1, 99)}.90", currency="EUR",
                      valid_until=now + timedelta(days=rng.uniform(1, 30)))
    return Item(f"m{merchant}-blog", f"m{merchant}-{n}", f"m{merchant}", title=title,
                content_html=f"<p>{body}</p>", content_text=body, summary=body[:200],
                url=f"https://m{merchant}.example/beitrag/{n}", kind=kind, event=event, offer=offer,
                tags=(rng.choice(WORDS).lower(),), language="de", published=published)


def build(db: Path, total: int) -> None:
    store = Store(f"sqlite:///{db}")
    store.sync_sources([SourceSpec(f"m{m}-blog", f"m{m}", "rss") for m in range(MERCHANTS)])
    rng, now, started = random.Random(1), datetime.now(timezone.utc), time.perf_counter()
    per_merchant = total // MERCHANTS
    done = 0
    for first in range(0, per_merchant, BATCH // MERCHANTS or 1):
        upto = min(per_merchant, first + (BATCH // MERCHANTS or 1))
        batch = [FetchOutcome(f"m{m}-blog", now, "ok", state=FetchState(),
                              parsed=Parsed(tuple(item(rng, m, n, now) for n in range(first, upto)), complete=False))
                 for m in range(MERCHANTS)]
        store.apply(batch)
        done += (upto - first) * MERCHANTS
        if done % 100_000 < BATCH:
            print(f"  built {done:,} records ({done / (time.perf_counter() - started):,.0f}/s)", flush=True)
    store.close()


def cached_db(cache: Path, total: int) -> Path:
    """A store of `total` records built today (its events are dated from today)."""
    cache.mkdir(parents=True, exist_ok=True)
    db = cache / f"web-{total}-{date.today().isoformat()}.db"
    if not db.exists():
        for old in cache.glob(f"web-{total}-*.db*"):
            old.unlink()
        print(f"building a store of {total:,} records in {db} (reused today) ...", flush=True)
        partial = db.with_suffix(".building")
        partial.unlink(missing_ok=True)
        build(partial, total)
        for suffix in ("-wal", "-shm"):
            Path(str(partial) + suffix).unlink(missing_ok=True)
        partial.rename(db)
    return db


def start_server(config: Path, port: int) -> subprocess.Popen:
    hub = ROOT / ".venv" / "bin" / "hub"
    log = (config.parent / "serve.log").open("wb")  # the server's own log, for a look afterwards
    proc = subprocess.Popen([str(hub), "serve", "-c", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=log, cwd=config.parent)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit(f"hub serve ended: {(config.parent / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
    proc.kill()
    sys.exit("hub serve did not answer within 2 minutes")


def load(tool: str, url: str, seconds: int, connections: int) -> dict[str, float]:
    done = subprocess.run([tool, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
                          capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", done).group(1))
    latency = {p: _ms(re.search(rf"^\s+{p}%\s+(\S+)", done, re.M).group(1)) for p in ("50", "99")}
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|Socket errors:.*?):?\s+(\d+)", done))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", done)
    if socket:
        errors = sum(map(int, socket.groups()))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done)
    errors += int(non2xx.group(1)) if non2xx else 0
    return {"rps": rps, "p50": latency["50"], "p99": latency["99"], "errors": errors}


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--port", type=int, default=8377)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hub-bench-web"))
    args = parser.parse_args()
    tool = wrk()
    db = cached_db(args.cache, args.records)
    config = write_config(args.cache, db)
    server = start_server(config, args.port)
    base = f"http://127.0.0.1:{args.port}"
    size = len(urllib.request.urlopen(base + "/", timeout=30).read())
    static = STATIC / f"bench-{size}.html"
    static.write_bytes(b"x" * size)
    results = {}
    try:
        for path in (*PATHS, f"/static/{static.name}"):
            try:
                urllib.request.urlopen(base + path, timeout=60).read()  # warm: the first answer fills caches
            except OSError as exc:
                print(f"  {path:<28} not served: {exc}", flush=True)
                continue
            results[path] = load(tool, base + path, args.seconds, args.connections)
            r = results[path]
            print(f"  {path:<28} {r['rps']:>8,.0f} req/s   p50 {r['p50']:7.1f} ms   p99 {r['p99']:7.1f} ms   "
                  f"errors {r['errors']}", flush=True)
    finally:
        static.unlink(missing_ok=True)
        server.terminate()
        try:
            server.wait(timeout=60)  # requests wrk left queued are answered first
        except subprocess.TimeoutExpired:
            server.kill()
    report(args, size, results, static.name)


def report(args: argparse.Namespace, size: int, results: dict, static_name: str) -> None:
    missing = {"rps": 0.0, "p50": float("inf"), "p99": float("inf"), "errors": 1}
    home, static = results.get("/", missing), results.get(f"/static/{static_name}", missing)
    search = results.get("/search?q=Konzerte", missing)
    print(f"\n{args.records:,} records, {args.connections} connections, {args.seconds} s per URL, "
          f"page of {size:,} bytes\n")
    print("| URL | requests/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|")
    for path, r in results.items():
        label = f"static file ({size:,} B)" if path.startswith("/static/") else path
        print(f"| `{label}` | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']} |")
    checks = [("/ at least 1,000 requests/s", home["rps"] >= 1000),
              ("/ p99 under 100 ms", home["p99"] < 100),
              ("/ within 3x of the static file", static["rps"] <= 3 * home["rps"]),
              ("search p99 under 200 ms", search["p99"] < 200),
              ("zero errors", all(r["errors"] == 0 for r in results.values()))]
    print()
    for name, ok in checks:
        print(f"  {'met    ' if ok else 'MISSED '} {name}")


if __name__ == "__main__":
    main()
