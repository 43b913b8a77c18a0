"""Cockpit benchmark: how long the project manager's pages take, and how much they weigh, in a
town of many participants.

    .venv/bin/python tests/benchmarks/bench_cockpit.py [--merchants 2000] [--trials 3] [--store URL]

Writes the cockpit's test town (tests/admintown.py) with N more participants of one feed each
and an empty store (every participant is then quiet: the participants page's worst case),
logs in as an administrator through the login form and fetches each cockpit page `--trials`
times in one process (FastAPI's TestClient, no network), printing the fastest time and the
page's size. Nothing is fetched from the feeds: the pages read the configuration and the
store. Aim: no page of the cockpit grows with the town beyond a page of rows (the source
overview, the participants and the quiet ones come 100, 100 and 50 a page), but
`/admin/config`, which shows the whole file to edit and the configuration it makes.

--store URL puts the town on an existing store instead, to see the pages over a big one, e.g.
the 300,000 records of `bench_listing.py --records 300000 --db /tmp/listing.db` with
`--merchants 0 --store sqlite:////tmp/listing.db` (its merchants are not the town's: what
grows with the store, not with the town).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from hub.web.app import create_app  # noqa: E402
from tests.admintown import login, open_town, write_config  # noqa: E402

PAGES = ("/admin", "/admin/merchants", "/admin/review", "/admin/stats", "/admin/audit", "/admin/config", "/metrics",
         "/healthz")


def town(folder: Path, merchants: int, store_url: str | None = None) -> Path:
    path = write_config(folder, "http://127.0.0.1:9", store_url=store_url)
    more = "".join(f"  - id: laden-{i}\n    name: Laden {i}\n"
                   f"    sources: [{{connector: rss, url: 'http://127.0.0.1:9/laden-{i}.xml'}}]\n"
                   for i in range(merchants))
    path.write_text(path.read_text(encoding="utf-8").replace("channels:\n", more + "channels:\n"), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--merchants", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--store", help="an existing store's URL (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings, store = open_town(town(Path(tmp), args.merchants, args.store))
        print(f"town: {len(settings.merchants):,} participants, {len(settings.sources()):,} sources, "
              f"{store.records.count(status=None, removed=True, expired=True):,} records in the store")
        with TestClient(create_app(settings, store), base_url="http://127.0.0.1", follow_redirects=False) as client:
            login(client, "anna")
            for path in PAGES:
                times = []
                for _ in range(args.trials):
                    started = time.perf_counter()
                    answer = client.get(path)
                    times.append(time.perf_counter() - started)
                print(f"{path:18s} {answer.status_code}  {min(times) * 1000:7.0f} ms  {len(answer.content) / 1024:7.0f} KB")
        store.close()


if __name__ == "__main__":
    main()
