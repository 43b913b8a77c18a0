"""The JSON Lines channel: appends each newly published item to a file, one JSON object a line.

An archive of what the hub published, and the simplest integration there is: a static site
generator, a mail merge or a small script reads the file (`tail -f`, `jq`). Each line is
`{"channel": ..., "published_at": ..., "item": {...}}` with the item as `Item.to_dict()`.
The delivery ledger makes sure an item is appended once, whoever runs the channel.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Sequence

from hub.errors import DeliveryError
from hub.models import Item
from renderers.base import ChannelRef, Delivery, RendererOptions, item_key

if TYPE_CHECKING:
    from hub.http import Fetcher


class JsonLinesOptions(RendererOptions):
    path: Path  # the file to append to; relative to the config file's folder


class JsonLinesPublisher:
    kind: ClassVar[str] = "jsonlines"
    Options: ClassVar[type[RendererOptions]] = JsonLinesOptions

    async def publish(self, opts: JsonLinesOptions, channel: ChannelRef, items: Sequence[Item],
                      client: Fetcher) -> list[Delivery]:
        path = opts.path if opts.path.is_absolute() else channel.base_dir / opts.path
        now = datetime.now(timezone.utc).isoformat()
        text = "".join(json.dumps({"channel": channel.id, "published_at": now, "item": item.to_dict()},
                                  ensure_ascii=False) + "\n" for item in items)
        try:
            await asyncio.to_thread(_append, path, text)
        except OSError as exc:
            raise DeliveryError(f"cannot append to {path}: {exc}",
                                hint="check the channel's path and that the hub may write there") from exc
        return [Delivery(item_key(item), "sent") for item in items]


def _append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())  # "sent" is recorded next; the lines must be on disk first
