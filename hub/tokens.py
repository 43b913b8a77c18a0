"""Checking the access tokens merchants granted (issue 12), before they stop working.

A connector whose source reads with a token someone granted may offer `check_token(opts,
fetcher) -> TokenCheck | None` (Facebook and Instagram ask Meta's `debug_token`): whether
the token is valid, when it and its data access end, which permissions it lacks. None
means it cannot be asked (the Facebook app's id and secret are not configured).

`check_tokens` asks for each such source and keeps the answers in the store
(hub/store/tokens.py), with the fingerprint of the options they were made with. `hub sources`
and `/healthz` show what a current answer warns about (`TokenCheck.warnings`): a token or
its data access ending within 14 days, a missing permission, an invalid token. A warning
never marks the source as failing; the fetch itself says when a token stopped working.

Who asks: `hub run` once a day (schedules/scheduler.py, the `tokens` job: the sources
not checked for 20 hours, or whose options changed), and `hub facebook check` on demand.
Tokens are never stored, logged or shown: only what Meta says about them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub import plugins
from hub.config import MerchantConfig, Settings, SourceConfig
from hub.http import Fetcher
from hub.models import TokenCheck
from hub.store import Store, utcnow
from hub.store.tokens import TokenChecks

log = logging.getLogger("hub.tokens")
AT_ONCE = 4  # checks in flight together (one Graph call each)


@dataclass(frozen=True)
class TokenReport:
    """One source's answer: `check` (None: it cannot be asked), or `error` if asking failed."""

    source_id: str
    merchant_id: str
    connector: str
    check: TokenCheck | None = None
    error: str | None = None


def checkable(settings: Settings) -> list[tuple[MerchantConfig, SourceConfig]]:
    """The sources whose connector can check their token."""
    return [(m, s) for m, s in settings.sources()
            if callable(getattr(plugins.connector(s.connector), "check_token", None))]


async def check_tokens(settings: Settings, store: Store, fetcher: Fetcher, *,
                       sources: Sequence[tuple[MerchantConfig, SourceConfig]] | None = None,
                       older_than: timedelta | None = None) -> list[TokenReport]:
    """Ask about the tokens of `sources` (default: every source that can be checked), and
    keep the answers. With `older_than`, only the sources not checked for that long with
    their current options. Never raises for one source: its report carries the error."""
    chosen = list(checkable(settings) if sources is None else sources)
    if older_than is not None:
        chosen = _stale(store, chosen, utcnow() - older_than)
    gate = asyncio.Semaphore(AT_ONCE)

    async def one(merchant: MerchantConfig, source: SourceConfig) -> TokenReport:
        async with gate:
            try:
                check = await plugins.connector(source.connector)().check_token(source.options, fetcher)
            except Exception as exc:  # the connector's errors never hold a token
                return TokenReport(source.id, merchant.id, source.connector, error=str(exc))  # type: ignore[arg-type]
        return TokenReport(source.id, merchant.id, source.connector, check=check)  # type: ignore[arg-type]

    reports = await asyncio.gather(*(one(m, s) for m, s in chosen))
    fingerprints = {s.id: s.fingerprint for _, s in chosen}
    answered = {r.source_id: (fingerprints[r.source_id], r.check) for r in reports if r.check is not None}
    await asyncio.to_thread(TokenChecks(store.engine).save, answered)
    return reports


def _stale(store: Store, sources: list[tuple[MerchantConfig, SourceConfig]], before: datetime
           ) -> list[tuple[MerchantConfig, SourceConfig]]:
    checked = TokenChecks(store.engine).checked()
    return [(m, s) for m, s in sources
            if s.id not in checked or checked[s.id][0] != s.fingerprint or checked[s.id][1] < before]


async def daily_check(settings: Settings, store: Store, fetcher: Fetcher) -> list[TokenReport]:
    """`hub run`'s job: the tokens not checked for 20 hours (or since their options changed);
    what it finds goes to the log once, and to `hub sources` and `/healthz` until it is fixed."""
    reports = await check_tokens(settings, store, fetcher, older_than=timedelta(hours=20))
    now = utcnow()
    for r in reports:
        if r.error:
            log.warning("token check of %s failed: %s", r.source_id, r.error)
        elif r.check is not None:
            for warning in r.check.warnings(now):
                log.warning("token of %s: %s", r.source_id, warning)
    if any(r.check is not None for r in reports):
        log.info("token check: %d sources asked, %d answered", len(reports), sum(r.check is not None for r in reports))
    return reports
