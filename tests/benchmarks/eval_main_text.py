"""How well the website connector finds a page's main text (`main_text`), on trafilatura's
evaluation set: 990 real pages (most of them German), each with snippets its main text must
hold and snippets (navigation, footers, comments) it must not.

    git clone https://github.com/adbar/trafilatura /tmp/trafilatura   # not bundled: 145 MB
    .venv/bin/python tests/benchmarks/eval_main_text.py /tmp/trafilatura/tests

Prints precision, recall and F1 over the snippets (as trafilatura's own evaluation counts
them), the pages where nothing was found, and the time per page; for comparison, the same
for the page's whole text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from connectors.website_opengraph import main_text  # noqa: E402
from connectors.website_page import Page  # noqa: E402
from hub.sanitize import plain_text  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", type=Path, help="trafilatura's tests/ folder (evaldata.json, eval/, cache/)")
    args = parser.parse_args()
    cases = json.loads((args.tests / "evaldata.json").read_text())
    ours, whole, empty, pages, seconds = Counter(), Counter(), 0, 0, 0.0
    for url, case in cases.items():
        path = next((p for p in (args.tests / "eval" / case["file"], args.tests / "cache" / case["file"])
                     if p.exists()), None)
        if path is None:
            continue
        page = Page.load(path.read_bytes(), url, "text/html", ZoneInfo("Europe/Berlin"), datetime.now(UTC))
        started = time.perf_counter()
        text = plain_text(main_text(page))
        seconds += time.perf_counter() - started
        pages += 1
        empty += not text
        score(text, case, ours)
        score(page.tree.text_content(), case, whole)
    print(f"pages: {pages}, nothing found on {empty}, {seconds / max(1, pages) * 1000:.1f} ms a page")
    print(f"main_text:  {summary(ours)}")
    print(f"whole page: {summary(whole)}")


def score(text: str, case: dict, counts: Counter) -> None:
    text = " ".join(text.split())
    for snippet in case.get("with", []):
        counts["tp" if " ".join(snippet.split()) in text else "fn"] += 1
    for snippet in case.get("without", []):
        counts["fp" if " ".join(snippet.split()) in text else "tn"] += 1


def summary(c: Counter) -> str:
    precision = c["tp"] / max(1, c["tp"] + c["fp"])
    recall = c["tp"] / max(1, c["tp"] + c["fn"])
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    return f"precision {precision:.3f}, recall {recall:.3f}, F1 {f1:.3f}"


if __name__ == "__main__":
    main()
