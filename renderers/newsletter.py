"""The newsletter channel (`renderer: newsletter`, issue 15): a digest residents subscribe to.

Unlike the other push channels it does not get "the items not yet delivered" from the
publish tick: an edition is made once per schedule slot and sent to each subscriber once,
with a ledger of its own. That lives in the core (`hub.newsletter`), because the web form,
`hub run` and `hub publish` all need it; this module makes it a channel kind the config
knows and checks (`NewsletterOptions`).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from hub.newsletter.options import NewsletterOptions


class NewsletterRenderer:
    kind: ClassVar[str] = "newsletter"
    Options: ClassVar[type[BaseModel]] = NewsletterOptions
