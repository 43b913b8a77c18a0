"""Parse benchmark: the CPU cost per entry of the parse step alone, on one core.

    .venv/bin/python tests/benchmarks/bench_parse.py [--feeds 300] [--runs 3] [--profile]

Generates N feeds of the benchmark corpus (tests/benchmarks/corpus.py; not timed), parses
every one once to warm up (imports, cleaner caches), then times `hub.ingest.parse_payload`
over all of them: feed parsing, sanitizing, plain text, normalization (language, events in
prose) and content hashes, everything a parse worker does per payload. Prints entries and
entries/s of process time (CPU time, so another process on the machine skews it little).
--profile prints the top 30 functions of a cProfile run instead.

Target (issue 2): ~35,000 entries in under 5 s on 2 cores with HTTP and database writes
included, so parsing alone must manage 10,000+ entries/s per core.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from connectors.feed import FeedOptions  # noqa: E402
from hub.ingest import parse_payload  # noqa: E402
from hub.models import FetchState, Retrieved, SourceRef  # noqa: E402
from tests.benchmarks.corpus import feed  # noqa: E402


def jobs(n: int) -> list[tuple[FeedOptions, SourceRef, Retrieved]]:
    out = []
    for i in range(n):
        url = f"https://merchant{i}.example/feed.xml"
        out.append((FeedOptions(url=url), SourceRef(id=f"s{i}", merchant_id=f"m{i}", language="de"),
                    Retrieved(payload=feed(i), state=FetchState(), url=url, content_type="application/rss+xml")))
    return out


def parse_all(work: list[tuple[FeedOptions, SourceRef, Retrieved]]) -> int:
    return sum(len(parse_payload("rss", opts, ref, got).items) for opts, ref, got in work)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--feeds", type=int, default=300)
    ap.add_argument("--runs", type=int, default=1, help="timed passes over all feeds")
    ap.add_argument("--profile", action="store_true", help="print a cProfile top 30 instead of timing")
    args = ap.parse_args()

    work = jobs(args.feeds)
    size = sum(len(got.payload) for _, _, got in work)
    parse_all(work)  # warm-up
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(parse_all, work)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
        return
    print(f"{args.feeds} feeds, {size / 1e6:.1f} MB")
    for _ in range(args.runs):
        start = time.process_time()
        entries = parse_all(work)
        spent = time.process_time() - start
        print(f"parse: {entries} entries in {spent:.2f} s process time = {entries / spent:,.0f} entries/s")


if __name__ == "__main__":
    main()
