"""Never twice, never skipped: the sender is killed with SIGKILL again and again while it
sends an edition, and resumed each time (`hub publish --channel wochenpost` in a process of
its own, against a real SMTP server on loopback). Afterwards every subscriber has the mail;
the only duplicates are mails that were in flight at a kill (accepted by the server, not yet
marked sent in the ledger), and a duplicate carries the same Message-ID as the first copy.

The suite runs 1,000 subscribers and 10 kills (most of its time is starting `hub` eleven times);
`NEWSLETTER_CRASH_SUBSCRIBERS=5000` runs the full size of the issue (as does
`python tests/benchmarks/bench_newsletter.py --crash`).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from hub.newsletter.job import NewsletterJob
from hub.newsletter.sender import MAX_UNMARKED
from hub.newsletter.tables import DELIVERIES, SUBSCRIBERS
from tests.newsletter_town import SmtpSink, Town

# Processes started and killed: not about the date, so not in make test's second run (--clock-ahead).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SUBSCRIBERS_IN_SUITE = int(os.environ.get("NEWSLETTER_CRASH_SUBSCRIBERS", "1000"))
KILLS = 10


@dataclass
class CrashRun:
    subscribers: int
    kills: int = 0
    in_flight: list[int] = field(default_factory=list)  # mails accepted but not marked sent, per kill
    received: int = 0
    duplicates: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.subscribers:,} subscribers, {self.kills} kills (SIGKILL): {self.received:,} mails received, "
                f"{self.duplicates} duplicates; in flight at the kills: {self.in_flight} "
                f"(sum {sum(self.in_flight)}); {self.seconds:.1f} s")


def _hub(config: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "hub", "publish", "-c", str(config), "--channel", "wochenpost"],
                            cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _ledger(town: Town, edition_id: int) -> dict[int, str]:
    with town.store.engine.connect() as conn:
        return dict(conn.execute(select(DELIVERIES.c.subscriber_id, DELIVERIES.c.status)
                                 .where(DELIVERIES.c.edition_id == edition_id)).all())


def crash_run(folder: Path, subscribers: int, kills: int, seed: int = 15) -> CrashRun:
    rng = random.Random(seed)
    run = CrashRun(subscribers)
    started = time.perf_counter()
    with SmtpSink() as sink:
        # A short lease, so a resumed sender need not wait long for the killed one's to pass.
        town = Town(folder, sink.port, rate=5000, lease="1s")
        try:
            now = datetime.now(timezone.utc)
            town.add("baeckerei", "Frische Christstollen", at=now - timedelta(hours=2))
            town.add("musikverein", "Adventskonzert", at=now - timedelta(hours=1))
            town.subscribe_many([f"leser{n:05d}@example.org" for n in range(subscribers)])
            job = NewsletterJob(town.settings, town.store, owner="test")
            edition = job.make_edition(town.channel, now.replace(second=0, microsecond=0), now)
            assert edition is not None and edition.recipients == subscribers
            with town.store.engine.connect() as conn:
                ids = dict(conn.execute(select(SUBSCRIBERS.c.email, SUBSCRIBERS.c.id)).all())
            while run.kills < kills:
                before = len(sink.messages)
                target = before + rng.randint(20, max(21, subscribers // (kills + 1)))
                process = _hub(town.path)
                while len(sink.messages) < target and process.poll() is None:
                    time.sleep(0.002)
                if process.poll() is not None:
                    _, errors = process.communicate()
                    assert process.returncode == 0, errors.decode()
                    break  # it finished before the planned kill: nothing left to kill
                process.send_signal(signal.SIGKILL)
                process.wait()
                run.kills += 1
                ledger = _ledger(town, edition.id)
                received = {ids[m.recipient] for m in sink.messages}
                run.in_flight.append(sum(1 for sid in received if ledger[sid] != "sent"))
                time.sleep(1.1)  # the killed sender's lease passes
            for _ in range(5):  # resume until the edition is out
                process = _hub(town.path)
                _, errors = process.communicate(timeout=300)
                assert process.returncode == 0, errors.decode()
                if town.letters.edition(edition.id).status == "sent":
                    break
                time.sleep(1.1)
            ledger = _ledger(town, edition.id)
        finally:
            town.close()
        run.seconds = time.perf_counter() - started
        copies = Counter(m.recipient for m in sink.messages)
        message_ids = defaultdict(set)
        for m in sink.messages:
            message_ids[m.recipient].add(m.message["Message-ID"])
    run.received = sum(copies.values())
    run.duplicates = run.received - len(copies)
    assert set(copies) == set(ids), "a subscriber was skipped"
    assert set(ledger.values()) == {"sent"}, Counter(ledger.values())
    assert all(len(found) == 1 for found in message_ids.values()), "a duplicate with another Message-ID"
    assert run.duplicates <= sum(run.in_flight), run.summary()
    assert max(run.in_flight, default=0) <= MAX_UNMARKED + 1, run.summary()  # marks lag at most that far
    return run


def test_killed_ten_times_every_subscriber_gets_the_edition_and_duplicates_stay_in_flight(tmp_path, capsys):
    run = crash_run(tmp_path, SUBSCRIBERS_IN_SUITE, KILLS)
    assert run.kills == KILLS
    with capsys.disabled():
        print(f"\n  newsletter crash test: {run.summary()}")
