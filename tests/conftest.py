"""Shared fixtures: stores on SQLite (always) and PostgreSQL (when one is reachable), and
`--clock-ahead DAYS`, which runs the suite as if it were DAYS days later (`make test` runs
it a second time a year ahead, so no test can depend on today's date)."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import date
from pathlib import Path

import pytest

from hub.store import Store

TIMESHIFT = Path(__file__).parent / "timeshift"


def pytest_addoption(parser):
    parser.addoption("--clock-ahead", type=float, default=0.0, metavar="DAYS",
                     help="move the clock DAYS days ahead, in this process and in every Python "
                          "process the tests start (hub run, hub fetch, workers)")


def pytest_configure(config):
    days = config.getoption("--clock-ahead")
    if not days:
        return
    if os.environ.get("HUB_TEST_CLOCK_AHEAD") == str(days):
        return  # started by such a run (an xdist worker): tests/timeshift moved this clock already
    import time_machine
    from datetime import datetime, timedelta, timezone

    os.environ["HUB_TEST_CLOCK_AHEAD"] = str(days)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TIMESHIFT), os.environ.get("PYTHONPATH")]))
    config._clock_ahead = time_machine.travel(datetime.now(timezone.utc) + timedelta(days=days), tick=True)
    config._clock_ahead.start()


def pytest_unconfigure(config):
    if traveller := getattr(config, "_clock_ahead", None):
        traveller.stop()


def pytest_collection_modifyitems(config, items):
    """Tests marked `dialect_free` run on the SQLite store alone. The tests that start and
    kill processes (up to a minute or two each) are spread over the first half of the run:
    `make test` hands tests to its workers one at a time in this order (`--dist load
    --maxschedchunk 1`), so they run beside the short ones and each other's peaks, rather
    than alone at the end."""
    twins = {item for item in items if item.get_closest_marker("dialect_free") and _on_postgresql(item)}
    if twins:
        config.hook.pytest_deselected(items=list(twins))
    slow = [item for item in items if item.get_closest_marker("slow") and item not in twins]
    rest = [item for item in items if not item.get_closest_marker("slow") and item not in twins]
    step = len(rest) // (2 * len(slow)) if slow else 0
    items[:] = [t for i, item in enumerate(slow) for t in (item, *rest[i * step:(i + 1) * step])] + rest[len(slow) * step:]


def _on_postgresql(item) -> bool:
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def pytest_report_header(config):
    if days := config.getoption("--clock-ahead"):
        return f"clock moved {days:g} days ahead: today is {date.today().isoformat()}"


@pytest.fixture(scope="session", autouse=True)
def sqlite_template(tmp_path_factory):
    """A new SQLite store of this test process starts as a copy of one migrated here once:
    ~1 ms instead of ~0.1 s of migrations, a thousand times a run. `Store.migrate` still runs
    on the copy (it finds it at the newest revision); stores that `hub` processes started by
    the tests create are migrated from scratch, as a user's are."""
    template = tmp_path_factory.mktemp("sqlite-template") / "hub.db"
    Store(f"sqlite:///{template}").close()
    migrate = Store.migrate

    def from_template(store: Store) -> None:
        path = store.url.removeprefix("sqlite:///")
        if store.url.startswith("sqlite:///") and path != ":memory:" and not any(
                os.path.exists(path + suffix) for suffix in ("", "-wal", "-journal")):
            shutil.copyfile(template, path)
        migrate(store)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Store, "migrate", from_template)
        yield template


PG_ADMIN = os.environ.get("HUB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, connect_timeout=2):
            return True
    except Exception:
        return False


PG_AVAILABLE = _pg_available()


@pytest.fixture(scope="session")
def pg_template():
    """A database migrated once per test process: each test's database is a copy of it
    (CREATE DATABASE ... TEMPLATE), a tenth of a second instead of a second of migrations
    and the checkpoint their writes cost when the database is dropped."""
    if not PG_AVAILABLE:
        pytest.skip(f"no PostgreSQL reachable at {PG_ADMIN}")
    import psycopg

    name = f"hub_template_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    Store(_url_of(name)).close()  # no connection may stay open to a template
    yield name
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_template):
    """A fresh PostgreSQL database for one test, at the newest schema, dropped afterwards."""
    import psycopg

    name = f"hub_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield _url_of(name)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _url_of(database: str) -> str:
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{database}".replace("postgresql://", "postgresql+psycopg://")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = Store(url)
    yield s
    s.close()
