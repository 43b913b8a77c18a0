"""Recorded feed cases: every file in tests/data/feeds/ (and its folders) beside its expected result.

`python -m tests.feedcases` rewrites the expected files from the current parser; review
the diff before committing it, because the expected files are the specification.
"""

from __future__ import annotations

import json
from pathlib import Path

from connectors.feed import FeedConnector, FeedOptions
from hub.errors import ParseError
from hub.models import FetchState, Retrieved, SourceRef

CASES = Path(__file__).parent / "data" / "feeds"
SOURCE = SourceRef(id="src", merchant_id="merchant", language=None)


def inputs() -> list[Path]:
    """Every recorded feed, in tests/data/feeds/ and its folders (encodings/), without the
    expected results and a folder's README.md or generator script."""
    return sorted(p for p in CASES.rglob("*") if p.is_file() and ".expected." not in p.name
                  and p.name != "README.md" and p.suffix != ".py")


def expected_path(case: Path) -> Path:
    return case.with_name(case.stem + ".expected.json")


def run_case(case: Path) -> dict:
    url = f"https://feeds.example/{case.name}"
    got = Retrieved(payload=case.read_bytes(), state=FetchState(), url=url)
    try:
        parsed = FeedConnector().parse(FeedOptions(url=url), SOURCE, got)
    except ParseError as exc:
        return {"error": exc.message, "hint": exc.hint}
    return {"warnings": list(parsed.warnings), "ttl_seconds": parsed.ttl_seconds,
            "items": [item.to_dict() for item in parsed.items]}


if __name__ == "__main__":
    for case in inputs():
        expected_path(case).write_text(json.dumps(run_case(case), ensure_ascii=False, indent=2) + "\n")
        print("wrote", expected_path(case).name)
