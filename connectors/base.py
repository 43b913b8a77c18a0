"""What a connector is. A connector reads one kind of source (a feed, a Facebook page, a
website) and turns it into `Item`s. It never touches the database or the scheduler.

Besides `retrieve` and `parse`, a connector may have:

- `settle(opts, settings, today) -> (opts, [hub.config.ConfigNote])`, a classmethod: complete
  its options from the town-wide settings once the whole config is read (the Facebook
  connectors take the `facebook:` block's Graph host, version and app secret), and report
  what only the whole config can tell, as `file:line` problems or warnings (a feature that
  needs the app's secret when there is none; an API version near its end of life).
- `async retrieve_entries(opts, external_ids, fetcher) -> Retrieved`: read single entries
  again by their ids, as a partial payload whose `parse` names the ones the source no longer
  has in `Parsed.gone` (used by `hub.refresh`: pushes that only name an entry, image URLs
  that expired).

A connector whose source can fail in a way no retry fixes raises `hub.errors.TokenInvalid`
(or `NeedsPerson`): the store holds the source back until its options change, and hands the
error back as `FetchState.hold`, which such a connector raises again without asking the
network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from hub.models import FetchState, Parsed, Retrieved, SourceRef

if TYPE_CHECKING:
    from hub.http import Fetcher


class ConnectorOptions(BaseModel):
    """Base of every connector's options: unknown keys are configuration errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


O = TypeVar("O", bound=ConnectorOptions, contravariant=True)


class Connector(Protocol[O]):
    kind: ClassVar[str]
    Options: ClassVar[type[ConnectorOptions]]

    async def retrieve(self, opts: O, state: FetchState, fetcher: Fetcher) -> Retrieved:
        """Read the source over the network.

        Args:
            opts: the source's validated options.
            state: what the last successful fetch left (ETag, Last-Modified, cursor).
            fetcher: the hub's one hardened HTTP fetcher.
        Returns:
            the raw payload and the new state (saved only if `parse` succeeds).
        Raises:
            NotModified: the source has not changed since `state`.
            FetchError: the source could not be read.
        """
        ...

    def parse(self, opts: O, source: SourceRef, got: Retrieved) -> Parsed:
        """Turn a payload into items. Pure: no network, no database.

        Raises:
            ParseError: nothing usable could be read from the payload.
        """
        ...
