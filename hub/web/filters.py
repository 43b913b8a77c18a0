"""The filters of the resident pages and the feeds out (issue 14), defined once.

Each filter is a plain GET parameter, so every filtered view has its own URL that a school,
a club or the town's website can link to or subscribe to: `merchant` (id), `category`,
`district` (the merchants' `category` and `district` in the config), `kind` (post, event,
offer) and `tag`. A key may be repeated: its values are alternatives (OR); different keys
must all hold (AND). `/?category=gastronomie&category=handel&kind=offer` is every offer of a
restaurant or a shop. Values are compared without regard to case (a tag also without "#").

A value nothing matches gives an empty page or feed, never an error: a URL someone copied
stays valid when a merchant leaves. Only an unknown `kind` is an error (400), because it is
a typo in a fixed vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Protocol, Sequence
from urllib.parse import urlencode

from hub.models import Kind

KINDS = tuple(k.value for k in Kind)
KIND_NAMES = {"post": "Beiträge", "event": "Veranstaltungen", "offer": "Angebote"}


class FilterError(ValueError):
    """A filter value that cannot mean anything; the message is for residents (German)."""


class QueryParams(Protocol):
    def getlist(self, key: str) -> list[str]: ...


class MerchantLike(Protocol):
    id: str
    name: str
    category: str | None
    district: str | None


@dataclass(frozen=True)
class Filters:
    """What a page or feed is narrowed to; empty tuples mean "any"."""

    merchant: tuple[str, ...] = ()
    category: tuple[str, ...] = ()
    district: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()

    @classmethod
    def parse(cls, params: QueryParams) -> Filters:
        """The filters of a request's query (other parameters are left alone). Raises
        FilterError for an unknown kind."""
        values = {f.name: _values(params.getlist(f.name)) for f in fields(cls)}
        values["merchant"] = tuple(v.casefold() for v in values["merchant"])
        values["kind"] = tuple(dict.fromkeys(v.casefold() for v in values["kind"]))
        wrong = [k for k in values["kind"] if k not in KINDS]
        if wrong:
            raise FilterError(f"Unbekannte Art „{wrong[0]}“: kind kann post (Beiträge), event (Veranstaltungen) "
                              "oder offer (Angebote) sein.")
        return cls(**values)

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def only_merchant(self, merchant_id: str) -> Filters:
        """These filters on a merchant's own page: its id replaces any `merchant` value."""
        return replace(self, merchant=(merchant_id,))

    def without(self, *names: str) -> Filters:
        return replace(self, **{name: () for name in names})

    def pairs(self) -> list[tuple[str, str]]:
        """The query parameters, in a fixed order: equal filters give equal URLs."""
        return [(f.name, v) for f in fields(self) for v in sorted(getattr(self, f.name))]

    def query(self, **extra: Any) -> str:
        """The URL query of these filters plus `extra` (e.g. seite=2), without "?"."""
        return urlencode(self.pairs() + [(k, str(v)) for k, v in extra.items() if v is not None])

    def merchant_ids(self, merchants: Sequence[MerchantLike]) -> tuple[str, ...] | None:
        """The configured merchants that `merchant`, `category` and `district` leave (each
        key narrowing the others); None when none of them is given."""
        if not (self.merchant or self.category or self.district):
            return None
        chosen = [m for m in merchants if _fits(m.id, self.merchant) and _fits(m.category, self.category)
                  and _fits(m.district, self.district)]
        return tuple(sorted(m.id for m in chosen))

    def store_filters(self, merchants: Sequence[MerchantLike]) -> dict[str, Any]:
        """Keyword arguments for `store.records.list/count/marks` (hub.store.records)."""
        found: dict[str, Any] = {}
        ids = self.merchant_ids(merchants)
        if ids is not None:
            found["merchants"] = ids
        if self.kind:
            found["kinds"] = self.kind
        if self.tag:
            found["tags"] = self.tag
        return found

    def describe(self, merchants: Sequence[MerchantLike]) -> str:
        """In words, for feed titles: "Bäckerei Schmitz · Veranstaltungen · #advent"."""
        names = {m.id: m.name for m in merchants}
        parts = [" oder ".join(names.get(m, m) for m in self.merchant),
                 " oder ".join(self.category),
                 " oder ".join(f"Ortsteil {d}" for d in self.district),
                 " und ".join(KIND_NAMES[k] for k in self.kind),
                 " oder ".join(f"#{t.lstrip('#')}" for t in self.tag)]
        return " · ".join(p for p in parts if p)


def _values(raw: Iterable[str]) -> tuple[str, ...]:
    """Each value once, in the order given; blanks (an empty form field) are no filter."""
    return tuple(dict.fromkeys(v.strip() for v in raw if v and v.strip()))


def _fits(value: str | None, wanted: tuple[str, ...]) -> bool:
    return not wanted or (value is not None and value.casefold() in {w.casefold() for w in wanted})

