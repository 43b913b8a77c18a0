"""The `hub` command line: `commands` (fetch, run, serve, ...), `items` (the records),
`common` (what they share). The CLI is the top layer: it may use every package, and no
package imports it."""

from hub.cli.commands import app, main

__all__ = ["app", "main"]
