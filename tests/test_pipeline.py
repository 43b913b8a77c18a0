"""The whole path, merchant feed -> store, against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from hub import config
from hub.http import Fetcher
from hub.errors import ParseError
from hub.ingest import Fetched, Stored, connector_failed
from hub.pipeline import BATCH_SOURCES, POOL_FROM_SOURCES, Pipeline, _Batches, source_specs
from hub.store import FetchOutcome, Store
from tests.feedserver import FeedServer

T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)


def rss(entries: list[tuple[str, str, int]]) -> bytes:
    """A feed of (guid, title, days ago) entries, newest first."""
    items = "".join(
        f"<item><title>{title}</title><guid>{guid}</guid><link>https://laden.example/{guid}</link>"
        f"<pubDate>{format_datetime(T0 - timedelta(days=age))}</pubDate>"
        f"<description>&lt;p&gt;Text zu {title}&lt;/p&gt;</description></item>"
        for guid, title, age in entries)
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Laden</title>'
            f"<link>https://laden.example/</link>{items}</channel></rss>").encode()


FIVE = [(f"e{n}", f"Beitrag {n}", n) for n in range(1, 6)]


def write_config(tmp_path: Path, sources: dict[str, str], *, allowed: str | None = None, timeout: float = 5) -> Path:
    fetcher = (f"fetcher: {{allow_private_networks: false, allowed_networks: ['{allowed}'], total_timeout: {timeout}, retries: 0, host_spacing: 0}}"
               if allowed else f"fetcher: {{allow_private_networks: true, total_timeout: {timeout}, retries: 0, host_spacing: 0}}")
    lines = ["platform: {name: Teststadt}", f"store: {{url: 'sqlite:///{tmp_path}/hub.db'}}", fetcher, "merchants:"]
    for sid, url in sources.items():
        lines += [f"  - id: {sid}", f"    name: {sid}", "    sources:", f"      - {{connector: rss, id: {sid}, url: '{url}'}}"]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def fetch_all(path: Path):
    settings = config.load(path)
    store = Store(settings.store.url, base_dir=settings.base_dir)
    store.sync_sources(source_specs(settings))
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        reports = await Pipeline(settings, store, fetcher).run(settings.sources())
    return {r.source_id: r for r in reports}, store


@pytest.fixture
def server():
    with FeedServer(files={"laden.xml": rss(FIVE)}) as srv:
        yield srv


async def test_refetch_adds_nothing_edit_updates_and_deletion_is_detected(server, tmp_path):
    path = write_config(tmp_path, {"laden": server.url("/files/laden.xml")})
    reports, store = await fetch_all(path)
    assert (reports["laden"].status, reports["laden"].new) == ("ok", 5)
    ids = {s.item.external_id: s.id for s in store.items()}

    reports, _ = await fetch_all(path)
    assert reports["laden"].status == "not_modified"  # conditional GET: no parse, no write
    assert server.requests[-1].headers.get("if-none-match")

    edited = [("e1", "Beitrag 1 (neu)", 1)] + FIVE[1:]
    server.files["laden.xml"] = rss(edited)
    reports, store = await fetch_all(path)
    assert (reports["laden"].new, reports["laden"].changed, reports["laden"].unchanged) == (0, 1, 4)
    after = {s.item.external_id: s for s in store.items()}
    assert after["e1"].id == ids["e1"] and after["e1"].item.title == "Beitrag 1 (neu)"

    # e3 deleted from the middle; e5 slides out of the end of the window
    server.files["laden.xml"] = rss([edited[0], FIVE[1], FIVE[3]])
    reports, store = await fetch_all(path)
    assert reports["laden"].gone == 1
    assert {s.item.external_id for s in store.items()} == {"e1", "e2", "e4", "e5"}
    assert store.count_items(include_deleted=True) == 5


async def test_hostile_sources_fail_clearly_while_the_others_succeed(tmp_path):
    canary = socket.socket()
    canary.bind(("127.0.0.1", 0))
    canary.listen(5)
    canary.setblocking(False)
    with FeedServer(host="127.0.0.2", files={"laden.xml": rss(FIVE), "html.xml": b"<!doctype html><p>Hallo"}) as srv:
        sources = {
            "gut": srv.url("/files/laden.xml"),
            "riesig": srv.url("/huge?mb=20"),
            "bombe": srv.url("/gzipbomb?gb=10"),
            "kein-xml": srv.url("/notxml"),
            "umleitung": srv.url(f"/redirect?to=http://127.0.0.1:{canary.getsockname()[1]}/feed.xml"),
            "stumm": srv.url("/hang"),
            "fehlt": srv.url("/status/404"),
        }
        path = write_config(tmp_path, sources, allowed="127.0.0.2/32", timeout=2)
        reports, store = await fetch_all(path)
    with pytest.raises(BlockingIOError):
        canary.accept()  # nobody ever connected to the internal address
    canary.close()

    assert (reports["gut"].status, reports["gut"].new) == ("ok", 5)
    expected = {"riesig": "larger than 10 MiB", "bombe": "larger than 10 MiB", "kein-xml": "HTML page",
                "umleitung": "127.0.0.1", "stumm": "2 s", "fehlt": "404"}
    for sid, fragment in expected.items():
        assert reports[sid].status == "failed", sid
        assert fragment in reports[sid].error, (sid, reports[sid].error)
    statuses = {s.id: s for s in store.source_statuses()}
    assert statuses["gut"].status == "ok"
    assert all(statuses[sid].status == "failing" and statuses[sid].last_error for sid in expected)


def hub(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_cli_fetch_items_sources_and_check(server, tmp_path):
    path = write_config(tmp_path, {"laden": server.url("/files/laden.xml"), "kaputt": server.url("/status/500")})
    done = hub("fetch", "-c", str(path), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "laden" in done.stdout and "kaputt" in done.stdout and "HTTP 500" in done.stdout
    assert "1 of 2 sources failed" in done.stderr

    done = hub("items", "-c", str(path), "--format", "json", cwd=tmp_path)
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["title"] for r in records] == [f"Beitrag {n}" for n in range(1, 6)]
    assert records[0]["origins"][0]["source_id"] == "laden"

    done = hub("items", "-c", str(path), "-q", "Beitrag 3", "--format", "json", cwd=tmp_path)
    assert [json.loads(line)["title"] for line in done.stdout.splitlines()] == ["Beitrag 3"]

    done = hub("sources", "-c", str(path), cwd=tmp_path)
    assert "failing" in done.stdout and "HTTP 500" in done.stdout

    bad = Path(__file__).parent / "data" / "config" / "three_errors.yaml"
    done = hub("check", "-c", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    located = [line for line in done.stderr.splitlines() if line.startswith(str(bad) + ":")]
    assert len(located) == 3


async def test_a_large_run_parses_and_stores_in_worker_processes(tmp_path):
    """From POOL_FROM_SOURCES sources on, worker processes parse and store, taking turns to
    write. Every entry is stored once, a broken feed fails alone, an entry two sources of
    one merchant share (parsed in different batches) becomes one record, and the re-poll
    is all 304."""
    n = POOL_FROM_SOURCES + 10
    files = {f"f{i}.xml": rss([(f"s{i}-e{k}", f"Beitrag {i}.{k}", k) for k in range(1, 6)]) for i in range(n)}
    shared = [("geteilt", "Gemeinsamer Beitrag", 0)]
    files["f0.xml"] = rss(shared + [(f"s0-e{k}", f"Beitrag 0.{k}", k) for k in range(1, 5)])
    files[f"f{n - 1}.xml"] = rss(shared + [(f"s{n - 1}-e{k}", f"Beitrag x.{k}", k) for k in range(1, 5)])
    with FeedServer(files={**files, "broken.xml": b"Wartungsarbeiten, bitte spaeter"}) as server:
        lines = ["platform: {name: Teststadt}", f"store: {{url: 'sqlite:///{tmp_path}/hub.db'}}",
                 "fetcher: {allow_private_networks: true, host_spacing: 0, max_per_host: 16, retries: 0}",
                 "merchants:", "  - id: laden", "    name: Laden", "    sources:"]
        lines += [f"      - {{connector: rss, id: s{i}, url: '{server.url(f'/files/f{i}.xml')}'}}" for i in (0, n - 1)]
        for i in [*range(1, n - 1), "broken"]:
            url = server.url(f"/files/{'broken' if i == 'broken' else f'f{i}'}.xml")
            lines += [f"  - id: m{i}", f"    name: Händler {i}", "    sources:",
                      f"      - {{connector: rss, id: s{i}, url: '{url}'}}"]
        (tmp_path / "config.yaml").write_text("\n".join(lines) + "\n")
        settings = config.load(tmp_path / "config.yaml")
        store = Store(settings.store.url, base_dir=settings.base_dir)
        store.sync_sources(source_specs(settings))
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            pipeline = Pipeline(settings, store, fetcher)
            try:
                first = {r.source_id: r for r in await pipeline.run(settings.sources())}
                assert pipeline._pool is not None  # the worker path, not the in-process one
                again = {r.source_id: r for r in await pipeline.run(settings.sources())}
            finally:
                pipeline.close()
    broken = first.pop("sbroken")
    assert broken.status == "failed" and "not a feed" in broken.error
    assert {(r.status, r.new) for r in first.values()} == {("ok", 5)}
    assert again.pop("sbroken").status == "failed"
    assert {r.status for r in again.values()} == {"not_modified"}
    assert store.count_items() == 5 * n
    assert store.records.count() == 5 * n - 1  # the shared entry is one record
    store.close()


async def test_a_batch_holds_at_most_batch_sources_payloads_and_any_number_of_304s():
    """A re-poll's 304s need no worker round trip per BATCH_SOURCES sources: outcomes
    without a payload all go in the next batch, payloads are cut at BATCH_SOURCES."""
    seen: list[list] = []

    async def record(work: list) -> list[Stored]:
        seen.append(work)
        return [Stored(w.source_id, "ok") for w in work]

    batches = _Batches(record, slots=1)
    work = [FetchOutcome(f"n{i}", T0, "not_modified") for i in range(3 * BATCH_SOURCES)]
    work += [Fetched(f"p{i}", "rss", None, None, None, T0) for i in range(BATCH_SOURCES + 5)]
    stored = await asyncio.gather(*map(batches.submit, work))
    await batches.close()
    assert [s.source_id for s in stored] == [w.source_id for w in work]
    assert [(len(b), sum(isinstance(w, Fetched) for w in b)) for b in seen] == [
        (4 * BATCH_SOURCES, BATCH_SOURCES), (5, 5)]


def test_a_connector_error_names_the_problem_and_a_crash_is_reported_as_a_bug():
    told = connector_failed("s1", "rss", T0, ParseError("the feed cannot be read"))
    assert (told.status, told.error_code, told.error) == ("failed", "parse_failed", "the feed cannot be read")
    crash = connector_failed("s1", "rss", T0, KeyError("title"))
    assert (crash.status, crash.error_code) == ("failed", "connector_crashed")
    assert crash.error.startswith("unexpected error in the rss connector: KeyError('title')")
    assert "this is a bug" in crash.error


@pytest.mark.postgres
async def test_worker_processes_store_a_towns_entries_in_its_own_schema(tmp_path, pg_url):
    """Issue 18: a town of a deployment lives in its PostgreSQL schema; the parse workers
    open its store again in their own process and must write there, not in `public`."""
    n = POOL_FROM_SOURCES + 2
    files = {f"f{i}.xml": rss([(f"s{i}-e1", f"Beitrag {i}", 1)]) for i in range(n)}
    with FeedServer(files=files) as server:
        lines = ["platform: {name: Teststadt}", "fetcher: {allow_private_networks: true, host_spacing: 0, max_per_host: 16, retries: 0}",
                 "merchants:"]
        for i in range(n):
            lines += [f"  - {{id: m{i}, name: Händler {i}, sources: [{{connector: rss, id: s{i}, "
                      f"url: '{server.url(f'/files/f{i}.xml')}'}}]}}"]
        (tmp_path / "config.yaml").write_text("\n".join(lines) + "\n")
        settings = config.load(tmp_path / "config.yaml")
        store = Store(pg_url, schema="town_teststadt")
        store.sync_sources(source_specs(settings))
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            pipeline = Pipeline(settings, store, fetcher, parse_workers=2)
            try:
                reports = await pipeline.run(settings.sources())
                assert pipeline._pool is not None  # the worker path
            finally:
                pipeline.close()
        assert {r.status for r in reports} == {"ok"}
        with store.engine.connect() as conn:
            counts = conn.exec_driver_sql("SELECT table_schema, count(*) FROM information_schema.tables "
                                          "WHERE table_name = 'items' GROUP BY table_schema").all()
            in_town = conn.exec_driver_sql("SELECT count(*) FROM town_teststadt.items").scalar()
            in_public = conn.exec_driver_sql("SELECT count(*) FROM public.items").scalar()
        store.close()
    assert in_town == n and in_public == 0, counts


async def test_concurrent_runs_of_a_worker_store_in_shared_batches(tmp_path):
    """A `hub worker` runs many fetch jobs of a source each at once: with shared batches,
    their payloads are stored in a few transactions, not one per job, and every job gets
    its own sources' reports."""
    from sqlalchemy import event
    feeds = {f"laden{n}.xml": rss([(f"n{n}e{k}", f"Laden {n} Beitrag {k}", k) for k in range(1, 4)]) for n in range(8)}
    with FeedServer(files=feeds) as srv:
        path = write_config(tmp_path, {f"laden{n}": srv.url(f"/files/laden{n}.xml") for n in range(8)})
        settings = config.load(path)
        store = Store(settings.store.url, base_dir=settings.base_dir)
        store.sync_sources(source_specs(settings))
        commits = []
        event.listen(store.engine, "commit", lambda conn: commits.append(1))
        async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
            pipeline = Pipeline(settings, store, fetcher, parse_workers=0, shared_batches=1)
            try:
                jobs = [pipeline.run([pair]) for pair in settings.sources()]
                results = await asyncio.gather(*jobs)
            finally:
                await pipeline.aclose()
    assert [[(r.source_id, r.status, r.new) for r in reports] for reports in results] == [
        [(f"laden{n}", "ok", 3)] for n in range(8)]
    assert 1 <= len(commits) <= 4  # ingest writes (plus fetch_states reads, which commit nothing)
    assert sorted(i.item.external_id for i in store.items()) == sorted(f"n{n}e{k}" for n in range(8) for k in range(1, 4))
