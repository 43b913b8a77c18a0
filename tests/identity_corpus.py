"""The identity corpus (tests/data/identity/): cases written for this project, each a list
of fetches (normalized items as a connector hands them to the pipeline) and project-manager
actions, beside the canonical records it must yield.

    .venv/bin/python -m tests.identity_corpus     # every case, then precision and recall

Precision and recall are over pairs of origins: a pair is "merged" when both end in one
record. The truth is the expected records, or a case's `truth` where the hub knowingly
falls short of it (documented misses). Cases in tests/data/identity/open/ are what the hub
should do and does not yet: reported apart, outside the score.
"""

from __future__ import annotations

import json
from datetime import datetime
from itertools import combinations
from pathlib import Path
from typing import Any

from hub.models import Event, FetchState, Item, Media, Offer, Parsed
from hub.normalize import normalize_parsed
from hub.records import Record
from hub.sanitize import plain_text
from hub.store import FetchOutcome, SourceSpec, Store

DATA = Path(__file__).parent / "data" / "identity"
ZONE = "Europe/Berlin"


def cases(folder: Path = DATA) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".expected.json"))


def expected(case: Path) -> dict[str, Any]:
    return json.loads(case.with_suffix("").with_suffix(".expected.json").read_text())


def run(case: Path, store: Store) -> list[dict[str, Any]]:
    """Feed a case through the store's write path; the records it ends with."""
    spec = json.loads(case.read_text())
    store.sync_sources([SourceSpec(sid, mid, "feed") for sid, mid in spec["sources"].items()])
    for step in spec["steps"]:
        at = datetime.fromisoformat(step["at"])
        if "fetch" in step:
            source = step["fetch"]
            items = tuple(_item(raw, source, spec["sources"][source]) for raw in step["items"])
            parsed = normalize_parsed(Parsed(items, complete=step.get("complete", True)), ZONE)
            store.apply([FetchOutcome(source, at, "ok", parsed=parsed, state=FetchState())])
        else:
            source, _, external_id = step["split"].partition("/")
            item_id = _item_id(store, source, external_id)
            store.records.split(store.records.of_item(item_id), [item_id], now=at)
    return observed(store)


def observed(store: Store) -> list[dict[str, Any]]:
    records = store.records.list(limit=10_000, status=None, removed=True, expired=True)
    return [_describe(store, r) for r in records]


def _describe(store: Store, r: Record) -> dict[str, Any]:
    key = {o.item_id: f"{o.item.source_id}/{o.item.external_id}" for o in r.origins}
    item = r.item
    return {
        "origins": sorted(key.values()), "live": sorted(key[o.item_id] for o in r.origins if o.live),
        "removed": r.removed_at is not None, "status": r.status, "kind": item.kind.value, "title": item.title,
        "url": item.url, "merchant_id": item.merchant_id, "language": item.language,
        "event_start": item.event.start.isoformat() if item.event else None,
        "event_location": item.event.location if item.event else None,
        "cancelled": bool(item.event and item.event.cancelled),
        "offer_price": item.offer.price if item.offer else None,
        "image": item.media[0].url if item.media else None,
        "text_from": key[r.fields_from["text"]], "text": item.content_text,
        "rules": {key[o.item_id]: o.rule for o in r.origins if o.rule != "first"},
        "revisions": [rev.change for rev in store.records.revisions(r.id)],
    }


def compare(actual: list[dict[str, Any]], want: dict[str, Any]) -> list[str]:
    """Differences between what a case yielded and its expected records (empty: as expected)."""
    problems = []
    by_origins = {tuple(a["origins"]): a for a in actual}
    wanted = {tuple(sorted(w["origins"])): w for w in want["records"]}
    for origins in sorted(set(by_origins) ^ set(wanted)):
        problems.append(f"{'unexpected' if origins in by_origins else 'missing'} record {list(origins)}")
    for origins, w in wanted.items():
        got = by_origins.get(origins)
        if got is None:
            continue
        for field, value in w.items():
            seen = got["text"] if field == "text_contains" else got.get(field)
            ok = value in seen if field == "text_contains" else _same(field, seen, value)
            if not ok:
                problems.append(f"{list(origins)}: {field} is {seen!r}, expected {value!r}")
    return problems


def _same(field: str, seen: Any, value: Any) -> bool:
    if field in ("origins", "live"):
        return sorted(seen) == sorted(value)
    if field == "event_start" and seen and value:
        return datetime.fromisoformat(seen) == datetime.fromisoformat(value)
    return seen == value


def merged_pairs(groups: list[list[str]]) -> set[tuple[str, str]]:
    return {tuple(sorted(p)) for g in groups for p in combinations(g, 2)}


def score(results: list[tuple[list[list[str]], list[list[str]]]]) -> tuple[float, float, int, int, int]:
    """(precision, recall, true, false positive, false negative pairs) over (actual, truth) groupings."""
    tp = fp = fn = 0
    for actual, truth in results:
        a, t = merged_pairs(actual), merged_pairs(truth)
        tp, fp, fn = tp + len(a & t), fp + len(a - t), fn + len(t - a)
    return tp / ((tp + fp) or 1), tp / ((tp + fn) or 1), tp, fp, fn


def truth_of(want: dict[str, Any]) -> list[list[str]]:
    return want.get("truth") or [w["origins"] for w in want["records"]]


def _item(raw: dict[str, Any], source_id: str, merchant_id: str) -> Item:
    html = raw.get("html", "")
    return Item(source_id=source_id, external_id=raw["id"], merchant_id=merchant_id, title=raw.get("title", ""),
                summary=raw.get("summary", ""), content_html=html, content_text=plain_text(html), url=raw.get("url"),
                published=_dt(raw.get("published")), updated=_dt(raw.get("updated")),
                language=raw.get("language", "de"), tags=tuple(raw.get("tags", ())),
                media=tuple(Media(**m) for m in raw.get("media", ())),
                event=_event(raw.get("event")), offer=_offer(raw.get("offer")))


def _event(raw: dict[str, Any] | None) -> Event | None:
    if not raw:
        return None
    return Event(start=datetime.fromisoformat(raw["start"]), end=_dt(raw.get("end")), timezone=ZONE,
                 all_day=raw.get("all_day", False), location=raw.get("location"), cancelled=raw.get("cancelled", False))


def _offer(raw: dict[str, Any] | None) -> Offer | None:
    if not raw:
        return None
    return Offer(price=raw.get("price"), currency=raw.get("currency"), valid_from=_dt(raw.get("valid_from")),
                 valid_until=_dt(raw.get("valid_until")))


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _item_id(store: Store, source_id: str, external_id: str) -> int:
    return next(s.id for s in store.items(source_id=source_id, limit=10_000, include_deleted=True)
                if s.item.external_id == external_id)


def main() -> None:
    import tempfile

    results, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases():
            actual, want, problems = _tried(case, Path(tmp))
            failed += bool(problems)
            print(f"{'ok  ' if not problems else 'FAIL'} {case.stem}" + "".join(f"\n       {p}" for p in problems))
            results.append(([a["origins"] for a in actual], truth_of(want)))
        precision, recall, tp, fp, fn = score(results)
        print(f"\n{len(results)} cases, {failed} failed; merging over origin pairs: precision {precision:.3f}, "
              f"recall {recall:.3f} ({tp} right, {fp} wrong merges, {fn} missed)")
        for case in cases(DATA / "open"):
            problems = _tried(case, Path(tmp))[2]
            print(f"open {'(now right) ' if not problems else ''}{case.stem}: {json.loads(case.read_text())['about']}")


def _tried(case: Path, folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any], list[str]]:
    """(the records a case ends with in a store of its own, the expected ones, what differs)."""
    store = Store(f"sqlite:///{folder}/{case.parent.name}-{case.stem}.db")
    actual = run(case, store)
    store.close()
    want = expected(case)
    return actual, want, compare(actual, want)


if __name__ == "__main__":
    main()
