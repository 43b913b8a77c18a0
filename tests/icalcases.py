"""Recorded calendar cases: every .ics file in tests/data/calendars/ beside its expected result,
read at the moment `cases.json` names (the expansion window is fixed, whatever today is).

`python -m tests.icalcases` rewrites the expected files from the current connector; review
the diff before committing it, because the expected files are the specification.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from connectors.ical import ICalConnector, ICalOptions, cursor
from hub.errors import ParseError
from hub.models import FetchState, Retrieved, SourceRef

CASES = Path(__file__).parent / "data" / "calendars"
SOURCE = SourceRef(id="src", merchant_id="verein", language="de", timezone="Europe/Berlin")


def inputs() -> list[Path]:
    return sorted(CASES.glob("*.ics"))


def expected_path(case: Path) -> Path:
    return case.with_name(case.stem + ".expected.json")


def settings(case: Path) -> dict:
    """The case's line of cases.json: retrieved_at, horizon, past, content_type."""
    return json.loads((CASES / "cases.json").read_text())[case.name]


def options(case: Path, url: str | None = None) -> ICalOptions:
    wanted = settings(case)
    extra = {k: wanted[k] for k in ("horizon", "past") if k in wanted}
    return ICalOptions(url=url or canonical_url(case), **extra)


def canonical_url(case: Path) -> str:
    """Where the expected files say the calendar came from (the test server's port varies)."""
    return f"https://kalender.example/{case.name}"


def run_case(case: Path, got: Retrieved | None = None) -> dict:
    """Parse the case (as `got` brought it, else from the file) read at its moment."""
    opts = options(case)
    at = datetime.fromisoformat(settings(case)["retrieved_at"])
    payload = got.payload if got is not None else case.read_bytes()
    got = Retrieved(payload=payload, state=FetchState(cursor=cursor(at, opts)), url=canonical_url(case))
    try:
        parsed = ICalConnector().parse(opts, SOURCE, got)
    except ParseError as exc:
        return {"error": exc.message, "hint": exc.hint}
    return {"warnings": list(parsed.warnings), "complete": parsed.complete, "gone": list(parsed.gone),
            "items": [item.to_dict() for item in parsed.items]}


if __name__ == "__main__":
    for case in inputs():
        expected_path(case).write_text(json.dumps(run_case(case), ensure_ascii=False, indent=2) + "\n")
        print("wrote", expected_path(case).name)
