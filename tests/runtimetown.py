"""Towns for the runtime tests: N feeds on one loopback server per town, a jsonlines push
channel, written as a single town config (the embedded tier) or a deployment file of towns
(the procrastinate tier)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.schedtown import feed

SCHEDULE = "first_fetches_per_second: 1000, publish_tick: 1s, shutdown_grace: 2s"


def feeds(town: str, n: int, posts: int = 2) -> dict[str, bytes]:
    """The files a feed server serves: `<town>-<i>.xml`."""
    return {f"{town}-{i}.xml": feed(f"{town}{i}", posts) for i in range(n)}


def town_config(path: Path, town: str, base_url: str, urls: dict[str, str], *, store_url: str | None = None,
                runtime: str | None = None, channel_file: Path | None = None, lease: str = "2m") -> Path:
    """A town config; the store only for a single town config (a deployment sets it)."""
    lines = [f"platform: {{name: {town}, base_url: '{base_url}'}}"]
    if store_url:
        lines.append(f"store: {{url: '{store_url}'}}")
    if runtime:
        lines.append(f"runtime: {runtime}")
    lines += ["fetcher: {allow_private_networks: true, retries: 0, total_timeout: 10, host_spacing: 0}",
              f"schedule: {{{SCHEDULE}, lease: {lease}}}", "merchants:"]
    for sid, url in urls.items():
        lines += [f"  - id: {sid}", f"    name: {sid}", "    sources:",
                  f"      - {{connector: rss, id: {sid}, url: '{url}'}}"]
    if channel_file:
        lines += ["channels:", f"  - {{id: archiv, renderer: jsonlines, path: '{channel_file}'}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def deployment(path: Path, store_url: str, towns: dict[str, Path]) -> Path:
    lines = [f"store: {{url: '{store_url}'}}", "runtime: procrastinate", "towns:"]
    lines += [f"  {town}: {file.name}" for town, file in towns.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def channel_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
