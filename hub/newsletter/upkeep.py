"""Storage limitation (GDPR Art. 5): what the newsletter keeps no longer than it needs.

- sign-ups never confirmed: deleted `FORGET_UNCONFIRMED` (7 days) after the form was sent;
- who got which edition (the ledger): deleted `retention` after the edition was finished
  (the `schedule.retention` of the config, 90 days by default).

Run by the maintenance job of `hub run` every hour; idempotent, any process may run it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from hub.newsletter.store import NewsletterStore
from hub.newsletter.subscribe import FORGET_UNCONFIRMED
from hub.store import Store

log = logging.getLogger("hub.newsletter")


def forget_expired(store: Store, now: datetime, retention: timedelta) -> tuple[int, int]:
    """(unconfirmed sign-ups, ledger rows) deleted."""
    letters = NewsletterStore(store)
    unconfirmed = letters.forget_unconfirmed(now - FORGET_UNCONFIRMED)
    ledger = letters.forget_ledgers(now - retention)
    if unconfirmed or ledger:
        log.info("newsletter: forgot %d unconfirmed sign-ups and %d delivery records of old editions",
                 unconfirmed, ledger)
    return unconfirmed, ledger
