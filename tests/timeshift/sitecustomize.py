"""Moves the clock of every Python process that a clock-shifted test run starts (`hub run`,
`hub fetch`, their worker processes): `tests/conftest.py` puts this folder on PYTHONPATH and
sets HUB_TEST_CLOCK_AHEAD to a number of days. Without that variable it does nothing."""

import os

if os.environ.get("HUB_TEST_CLOCK_AHEAD"):
    from datetime import datetime, timedelta, timezone

    import time_machine

    _days = float(os.environ["HUB_TEST_CLOCK_AHEAD"])
    time_machine.travel(datetime.now(timezone.utc) + timedelta(days=_days), tick=True).start()
