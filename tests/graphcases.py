"""Recorded Graph API cases: every `tests/data/graph/<case>.json` (a connector name and a
Graph API response, in the documented shapes) beside `<case>.expected.json`, the items the
connector's pure parse makes of it.

`python -m tests.graphcases` rewrites the expected files from the current mapping; review
the diff before committing it, because the expected files are the specification.
"""

from __future__ import annotations

import json
from pathlib import Path

from connectors.facebook import FacebookConnector, FacebookOptions
from connectors.instagram import InstagramConnector, InstagramOptions
from connectors.social import _payload
from hub.models import FetchState, Retrieved, SourceRef

CASES = Path(__file__).parent / "data" / "graph"
SOURCE = SourceRef(id="src", merchant_id="merchant", language="de")
CONNECTORS = {"facebook": (FacebookConnector, lambda: FacebookOptions(page_id="104523984512345", access_token="t")),
              "instagram": (InstagramConnector, lambda: InstagramOptions(ig_user_id="17841400000000000",
                                                                         access_token="t"))}


def inputs() -> list[Path]:
    return sorted(p for p in CASES.glob("*.json") if ".expected." not in p.name)


def expected_path(case: Path) -> Path:
    return case.with_name(case.stem + ".expected.json")


def run_case(case: Path) -> dict:
    recorded = json.loads(case.read_text(encoding="utf-8"))
    connector, options = CONNECTORS[recorded["connector"]]
    opts = options()
    entries = recorded["response"]["data"]
    got = Retrieved(payload=_payload(opts.object_id, entries, complete=True), state=FetchState(),
                    url=connector().origin(opts))
    parsed = connector().parse(opts, SOURCE, got)
    return {"warnings": list(parsed.warnings), "complete": parsed.complete, "gone": list(parsed.gone),
            "items": [item.to_dict() for item in parsed.items]}


if __name__ == "__main__":
    for case in inputs():
        expected_path(case).write_text(json.dumps(run_case(case), ensure_ascii=False, indent=2) + "\n")
        print("wrote", expected_path(case).name)
