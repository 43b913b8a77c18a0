"""A dry run of one source: fetch and parse it as the hub would, store nothing, and say what
came out (the items, the warnings) or what went wrong (in plain German, hub.health). What
`hub try-source` does on the command line, for the cockpit's config page."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hub import plugins
from hub.config import MerchantConfig, Settings, SourceConfig
from hub.errors import ConnectorError, NotModified
from hub.health import Explanation, explain, german_warning
from hub.http import Fetcher
from hub.ingest import parse_payload
from hub.models import FetchState, Item, SourceRef

SHOWN = 20  # items listed at most
TIMEOUT = 60.0  # seconds a dry run may take


@dataclass
class DryRun:
    source_id: str
    connector: str
    items: list[Item] = field(default_factory=list)
    total: int = 0
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    explanation: Explanation | None = None


async def try_source(settings: Settings, merchant: MerchantConfig, source: SourceConfig) -> DryRun:
    """Fetch and parse `source` once, without its saved state (a first fetch) and without
    storing anything."""
    result = DryRun(source.id or "", source.connector)  # type: ignore[arg-type]
    ref = SourceRef(id=source.id, merchant_id=merchant.id,  # type: ignore[arg-type]
                    language=source.language or merchant.language or settings.platform.language,
                    timezone=settings.platform.timezone)
    try:
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            connector = plugins.connector(source.connector)()
            got = await asyncio.wait_for(connector.retrieve(source.options, FetchState(), fetcher), TIMEOUT)
        parsed = await asyncio.to_thread(parse_payload, source.connector, source.options, ref, got)
    except NotModified:
        result.error = "Die Quelle meldet „nicht geändert“, obwohl der Hub nichts von ihr kennt."
        return result
    except asyncio.TimeoutError:
        result.error = f"Die Quelle hat nicht innerhalb von {TIMEOUT:g} Sekunden geantwortet."
        result.explanation = explain("no answer within")
        return result
    except ConnectorError as exc:
        result.error, result.explanation = str(exc), explain(str(exc), exc.code)
        return result
    except Exception as exc:  # a connector's bug must not take the page down
        result.error = f"unerwarteter Fehler im Connector {source.connector}: {exc!r}"
        result.explanation = explain(result.error, "connector_crashed")
        return result
    items = sorted(parsed.items, key=lambda i: i.published.timestamp() if i.published else 0.0, reverse=True)
    result.items, result.total = items[:SHOWN], len(items)
    result.warnings = [german_warning(w) for w in parsed.warnings]
    return result
