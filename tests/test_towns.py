"""Towns as tenants (issue 18): a deployment file, its validation, one web app that picks the
town by the Host header, and `hub towns reload` adding, changing and removing towns while the
app runs. The two towns below have the same merchant ids, source ids and item ids on
purpose: whatever one town stored must never show on the other's pages, feeds, search, API
or sitemap, on SQLite (a file per town) and on PostgreSQL (a schema per town)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hub.cli import app as cli
from hub.cli.towns import prepared_store, register
from hub.errors import ConfigError
from hub.models import FetchState, Parsed
from hub.normalize import normalize_parsed
from hub.store import FetchOutcome, Store
from hub.store.townregistry import TownRegistry
from hub.towns import DEFAULT_TOWN, load_deployment
from hub.web.towns import TownsApp
from tests.publictown import CONFIG, item

# Timeless: its feeds are dated relative to now and it checks nothing calendar-bound.
pytestmark = pytest.mark.timeless

TOWNS = {"musterstadt": "Musterstadt", "beispielheim": "Beispielheim"}


def town_config(name: str, host: str) -> str:
    """publictown's town (same merchants and sources in every town) under another name and host."""
    return CONFIG.replace("https://musterstadt.example", f"https://{host}").replace("Musterstadt", name)


def write_deployment(folder: Path, store_url: str, towns: dict[str, str], extra: str = "") -> Path:
    (folder / "towns").mkdir(exist_ok=True)
    lines = [f"store: {{url: '{store_url}'}}", extra, "towns:"]
    for town_id, name in towns.items():
        (folder / "towns" / f"{town_id}.yaml").write_text(town_config(name, f"{town_id}.example"))
        lines.append(f"  {town_id}: towns/{town_id}.yaml")
    path = folder / "deploy.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def fetch(store: Store, merchant: str, *items, n: int = 1) -> None:
    """One fetch of the merchant's feed through the store's real ingest path."""
    parsed = normalize_parsed(Parsed(tuple(items), complete=False), "Europe/Berlin")
    at = datetime.now(timezone.utc) + timedelta(seconds=n)
    store.apply([FetchOutcome(f"{merchant}-rss", at, "ok", parsed=parsed, state=FetchState())])


def fill(store: Store, name: str) -> None:
    """The same keys in every town; only the words differ (each town's name as a marker)."""
    fetch(store, "baeckerei", item("baeckerei", "stollen", f"Stollen aus {name}", tags=("Advent",)),
          item("baeckerei", "brot", f"Brot aus {name}", hours_ago=3))
    fetch(store, "tsv", item("tsv", "fest", f"Winterfest in {name}", hours_ago=2), n=2)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return "sqlite:///data/deployment.db"  # relative to the deployment file
    return request.getfixturevalue("pg_url")


@pytest.fixture
def deployment_path(tmp_path: Path, store_url: str) -> Path:
    path = write_deployment(tmp_path, store_url, TOWNS)
    deployment = load_deployment(path)
    register(deployment)  # what `hub towns reload` does
    for town in deployment.towns.values():
        store = prepared_store(town)
        fill(store, TOWNS[town.id])
        store.close()
    return path


def serve(path: Path, poll_seconds: float = 2.0) -> tuple[TownsApp, TestClient]:
    deployment = load_deployment(path)
    app = TownsApp(path, registry=TownRegistry(deployment.store_url), open_store=prepared_store,
                   poll_seconds=poll_seconds)
    return app, TestClient(app)


def get(client: TestClient, host: str, path: str):
    return client.get(path, headers={"host": host})


PAGES = ["/", "/feed.atom", "/feed.rss", "/feed.json", "/search?q=Stollen", "/search?q=Winterfest",
         "/api/v1/items", "/api/v1/items?q=Brot", "/sitemap.xml", "/m/baeckerei", "/events.ics", "/items/1",
         "/items/2", "/embed"]


def test_two_towns_on_one_database_never_see_each_others_records_and_unknown_hosts_get_404(deployment_path: Path) -> None:
    app, client = serve(deployment_path)
    with client:
        for town_id, name in TOWNS.items():
            others = [n for n in TOWNS.values() if n != name]
            host = f"{town_id}.example"
            assert name in get(client, host, "/").text
            assert f"aus {name}" in get(client, host, "/search?q=Stollen").text  # the query word is marked
            api = get(client, host, "/api/v1/items").json()
            assert {i["title"] for i in api["items"]} >= {f"Stollen aus {name}", f"Brot aus {name}"}
            towns_in_metrics = set(re.findall(r'town="([^"]+)"', get(client, host, "/metrics").text))
            assert towns_in_metrics == {town_id}  # its own figures, under its own name
            for page in PAGES:
                answer = get(client, host, page)
                assert answer.status_code in (200, 404), (page, answer.status_code)
                for other in others:
                    assert other not in answer.text, f"{host}{page} shows {other}'s content"
                    assert f"{other.lower()}.example" not in answer.text.lower(), f"{host}{page} links to {other}"
        # an unknown host gets a plain 404 and no town's content
        for host in ("elsewhere.example", "127.0.0.1:8000", "musterstadt.example.evil", ""):
            answer = get(client, host, "/api/v1/items")
            assert answer.status_code == 404
            assert "keine Stadt eingerichtet" in answer.text
            assert not any(name in answer.text for name in TOWNS.values())
        assert get(client, "MUSTERSTADT.example:80", "/").status_code == 200  # case-insensitive, port free


def test_reload_adds_changes_and_removes_towns_while_the_app_runs(deployment_path: Path, tmp_path: Path) -> None:
    app, client = serve(deployment_path, poll_seconds=0.05)
    with client:
        assert "Beispielheim erleben" in get(client, "beispielheim.example", "/").text
        generation = app.generation
        # beispielheim gets a new name, neustadt comes, musterstadt goes
        (tmp_path / "towns" / "beispielheim.yaml").write_text(town_config("Beispieldorf", "beispielheim.example"))
        (tmp_path / "towns" / "neustadt.yaml").write_text(town_config("Neustadt", "neustadt.example"))
        text = deployment_path.read_text().replace("  musterstadt: towns/musterstadt.yaml\n",
                                                   "  neustadt: towns/neustadt.yaml\n")
        deployment_path.write_text(text)
        result = CliRunner().invoke(cli, ["towns", "reload", "-c", str(deployment_path)])
        assert result.exit_code == 0, result.output
        assert "added: neustadt" in result.output and "removed: musterstadt" in result.output
        _wait_for(lambda: app.generation != generation)  # the app's own polling, no call from here
        assert "Beispieldorf erleben" in get(client, "beispielheim.example", "/").text
        assert "Stollen aus Beispielheim" in get(client, "beispielheim.example", "/").text  # its data stayed
        assert "Neustadt erleben" in get(client, "neustadt.example", "/").text
        assert get(client, "neustadt.example", "/api/v1/items").json()["items"] == []
        gone = get(client, "musterstadt.example", "/")
        assert gone.status_code == 404 and "Musterstadt" not in gone.text


@pytest.mark.parametrize("store_url", ["sqlite:///data/deployment.db"])  # the same on PostgreSQL
def test_a_failed_reload_changes_nothing(deployment_path: Path, tmp_path: Path) -> None:
    registry = TownRegistry(load_deployment(deployment_path).store_url)
    app, client = serve(deployment_path)
    with client:
        generation = app.generation
        (tmp_path / "towns" / "beispielheim.yaml").write_text("platform: {name: X, base_url: https://b.example}\n"
                                                              "merchnts: []\n")
        result = CliRunner().invoke(cli, ["towns", "reload", "-c", str(deployment_path)])
        assert result.exit_code == 2
        assert "beispielheim.yaml:2: unknown key 'merchnts'; did you mean 'merchants'?" in result.output
        assert "nothing was changed" in result.output
        assert registry.generation() == generation
        client.portal.call(app.refresh)
        assert "Beispielheim erleben" in get(client, "beispielheim.example", "/").text


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app did not pick up the new generation"
        time.sleep(0.02)


# --- the deployment file ----------------------------------------------------------------------


def test_a_single_town_config_is_the_default_town(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    deployment = load_deployment(path)
    assert list(deployment.towns) == [DEFAULT_TOWN] and deployment.runtime == "inprocess"
    town = deployment.towns[DEFAULT_TOWN]
    assert town.schema is None and town.settings.store.url == "sqlite:///data/hub.db"
    assert town.host == ("musterstadt.example", None)


def test_each_sqlite_town_has_its_own_file_and_folder(tmp_path: Path) -> None:
    deployment = load_deployment(write_deployment(tmp_path, "sqlite:///data/hub.db", TOWNS, "runtime: inprocess"))
    town = deployment.towns["musterstadt"]
    assert town.settings.store.url == f"sqlite:///{tmp_path / 'data/towns/musterstadt/hub.db'}"
    assert town.settings.data_dir == tmp_path / "data/towns/musterstadt"
    assert deployment.store_url == f"sqlite:///{tmp_path / 'data/hub.db'}"


def test_postgres_towns_share_the_database_in_their_own_schemas(tmp_path: Path) -> None:
    url = "postgresql+psycopg://hub@127.0.0.1/hub"
    deployment = load_deployment(write_deployment(tmp_path, url, TOWNS, "runtime: procrastinate"))
    assert deployment.runtime == "procrastinate"
    assert {t.id: (t.settings.store.url, t.schema) for t in deployment.towns.values()} == {
        "musterstadt": (url, "town_musterstadt"), "beispielheim": (url, "town_beispielheim")}


def problems_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_deployment(path)
    return "\n".join(caught.value.problems)


def test_deployment_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = write_deployment(tmp_path, "sqlite:///data/hub.db", TOWNS)
    path.write_text(path.read_text() + "runtim: inprocess\n")
    assert f"{path}:6: unknown key 'runtim'; did you mean 'runtime'?" in problems_of(path)

    path = write_deployment(tmp_path, "sqlite:///data/hub.db", TOWNS, "runtime: procrastinate")
    assert f"{path}:2: runtime 'procrastinate' needs a PostgreSQL store" in problems_of(path)

    path.write_text("store: {url: 'sqlite:///x.db'}\ntowns:\n  musterstadt: towns/musterstadt.yaml\n"
                    "  Bad Town: towns/beispielheim.yaml\n  fehlt: towns/fehlt.yaml\n")
    problems = problems_of(path)
    assert f"{path}:4: 'Bad Town' is not a valid town id" in problems
    assert f"{path}:5: town 'fehlt': config file {tmp_path / 'towns/fehlt.yaml'} not found" in problems


def test_a_broken_town_file_is_reported_with_its_own_file_and_line(tmp_path: Path) -> None:
    path = write_deployment(tmp_path, "sqlite:///data/hub.db", TOWNS)
    town_file = tmp_path / "towns" / "beispielheim.yaml"
    town_file.write_text(town_file.read_text() + "chanels: []\n")
    problems = problems_of(path)
    assert f"{path}:5: town 'beispielheim': 1 problem(s) in {town_file}, listed below" in problems
    assert f"{town_file}:" in problems and "unknown key 'chanels'; did you mean 'channels'?" in problems


def test_two_towns_on_one_host_and_a_town_store_url_are_refused(tmp_path: Path) -> None:
    path = write_deployment(tmp_path, "sqlite:///data/hub.db", TOWNS)
    (tmp_path / "towns" / "beispielheim.yaml").write_text(town_config("Beispielheim", "MUSTERSTADT.example"))
    assert "towns 'musterstadt' and 'beispielheim' have the same host musterstadt.example" in problems_of(path)

    (tmp_path / "towns" / "beispielheim.yaml").write_text(
        town_config("Beispielheim", "beispielheim.example") + "store: {url: 'sqlite:///own.db'}\n")
    assert "town 'beispielheim': the deployment sets the store" in problems_of(path)


def test_hub_check_checks_a_deployment_and_every_towns_config(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hub.cli import app

    path = write_deployment(tmp_path, "sqlite:///data/hub.db", TOWNS)
    done = CliRunner().invoke(app, ["check", "-c", str(path)], env={"COLUMNS": "300"})
    assert done.exit_code == 0, done.output
    assert f"{path}: OK — 2 towns, runtime inprocess" in done.output
    assert all(f"  {town_id} ({tmp_path / 'towns' / f'{town_id}.yaml'}): OK" in done.output for town_id in TOWNS)

    (tmp_path / "towns" / "beispielheim.yaml").write_text("platform: {name: B}\nmerchants: [{id: x}]\n")
    done = CliRunner().invoke(app, ["check", "-c", str(path)], env={"COLUMNS": "300"})
    assert done.exit_code == 2
    assert f"{tmp_path / 'towns' / 'beispielheim.yaml'}:2: missing required key 'merchants.0.name'" in done.output
