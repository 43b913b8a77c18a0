"""Moderation and content rules, as data from the YAML (per merchant, see `MerchantConfig`).

- `trust: review` holds a merchant's new records for the project manager (`hub items
  --pending`, then `approve` or `hide`); `publish` (the default) shows them at once.
- `block_words` hide a record that contains one of them; `keep_words`, when given, hide
  every record that contains none of them. A word matches case-insensitively at the start
  of a word ("Verein" also in "Vereinsfest"); the rules are checked again on every edit.
- `label` marks every record of the merchant (German platforms mark ads as "Anzeige").
- `quota: {channel: n}` shows at most n records of the merchant per day on that channel.
- `expire`: an event leaves the listings `events` after it ends (or starts), an offer at its
  `valid_until`, or `offers` after publication when it has none.

A record is judged by the rules of its organiser (`hub.records`). A project manager's
decision (approve, hide) stands until they change it; only a block word can still hide an
approved record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Mapping

from hub.models import Item

if TYPE_CHECKING:
    from hub.config import Settings

Status = Literal["published", "pending", "hidden"]
Actor = Literal["hub", "rule", "manager"]


@dataclass(frozen=True)
class MerchantRules:
    trust: Literal["publish", "review"] = "publish"
    label: str | None = None
    block: re.Pattern | None = None
    keep: re.Pattern | None = None
    quota: Mapping[str, int] = field(default_factory=dict)
    expire_events: timedelta | None = timedelta(days=1)
    expire_offers: timedelta | None = timedelta(days=30)
    name: str | None = None  # as residents know it: search finds its records by it (hub.search)


@dataclass(frozen=True)
class Rules:
    """Every merchant's rules; merchants not named get the defaults (publish at once)."""

    merchants: Mapping[str, MerchantRules] = field(default_factory=dict)
    timezone: str = "Europe/Berlin"

    def of(self, merchant_id: str) -> MerchantRules:
        return self.merchants.get(merchant_id, _DEFAULT)

    def quotas(self, channel_id: str) -> dict[str, int]:
        """merchant id -> most records per day on `channel_id`, for merchants with a quota there."""
        return {m: r.quota[channel_id] for m, r in self.merchants.items() if channel_id in r.quota}


_DEFAULT = MerchantRules()


def rules_from(settings: Settings) -> Rules:
    return Rules({m.id: MerchantRules(trust=m.trust, name=m.name, label=m.label, block=_words(m.block_words),
                                      keep=_words(m.keep_words), quota=dict(m.quota),
                                      expire_events=m.expire.events, expire_offers=m.expire.offers)
                  for m in settings.merchants}, settings.platform.timezone)


def _words(words: list[str]) -> re.Pattern | None:
    if not words:
        return None
    # At the start of a word: "Gewinnspiel" also catches "Gewinnspiele", "Verein" "Vereinsfest".
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    status: Status
    actor: Actor
    reason: str | None = None


def judge(rules: MerchantRules, item: Item, current: Verdict | None = None) -> Verdict:
    """The status of a record showing `item`. `current` is the status it has now (None for
    a new record): a project manager's decision stands, a rule's verdict is re-checked."""
    if rules.block is not None or rules.keep is not None:  # most merchants have no word rules
        text = f"{item.title}\n{item.summary}\n{item.content_text}"
        if rules.block is not None and (m := rules.block.search(text)):
            return Verdict("hidden", "rule", f"contains the blocked word '{m.group(0)}'")
        if rules.keep is not None and not rules.keep.search(text):
            return Verdict("hidden", "rule", "contains none of the keep words")
    if current is not None and current.actor != "rule":
        return current
    return _IN_REVIEW if rules.trust == "review" else _PUBLISHED


_PUBLISHED = Verdict("published", "hub")
_IN_REVIEW = Verdict("pending", "hub", "the merchant's records are reviewed before they are shown")


def expires_at(rules: MerchantRules, item: Item) -> datetime | None:
    """When the record leaves the listings, or None."""
    if item.event is not None:
        if rules.expire_events is None:
            return None
        ends = item.event.end or item.event.start + (timedelta(days=1) if item.event.all_day else timedelta(0))
        return ends + rules.expire_events
    if item.offer is not None:
        if item.offer.valid_until is not None:
            return item.offer.valid_until
        if rules.expire_offers is not None and item.published is not None:
            return item.published + rules.expire_offers
    return None
