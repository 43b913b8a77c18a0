"""The media store: images downloaded through the hub's fetcher from a real loopback server,
cleaned (EXIF gone, upright), stored by content in two widths and formats, served by the hub,
and collected when no record uses them any more."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hub import config
from hub.http import Fetcher
from hub.media import MediaStore, ingest_media
from hub.models import FetchState, Item, Media, Parsed
from hub.store import FetchOutcome, SourceSpec, Store
from hub.store.mediadb import StoredImage
from hub.web.app import create_app
from tests.feedserver import FeedServer

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


def jpeg_with_exif(width: int = 1600, height: int = 1200) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the camera was held upright
    exif[0x010F] = "Kamerahersteller"
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0)}  # GPS position of the merchant's home
    out = io.BytesIO()
    Image.new("RGB", (width, height), (180, 40, 40)).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def png_with_alpha() -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (300, 200), (0, 0, 255, 128)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def server():
    files = {"foto.jpg": jpeg_with_exif(), "logo.png": png_with_alpha(), "seite.html": b"<!doctype html><p>Hallo",
             "zweites.jpg": jpeg_with_exif(800, 600)}
    with FeedServer(files=files) as srv:
        yield srv


@pytest.fixture
def settings(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text(f"platform: {{name: Teststadt}}\nstore: {{url: 'sqlite:///{tmp_path}/hub.db'}}\n"
                    "fetcher: {allow_private_networks: true, retries: 0, total_timeout: 5, host_spacing: 0}\n"
                    "merchants:\n  - {id: laden, name: Laden}\n")
    return config.load(path, env={})


@pytest.fixture
def store(settings):
    s = Store(settings.store.url, base_dir=settings.base_dir)
    s.sync_sources([SourceSpec("laden-rss", "laden", "feed")])
    yield s
    s.close()


def post(n: int, *image_urls: str, hours: int = 0) -> Item:
    return Item("laden-rss", f"e{n}", "laden", title=f"Beitrag {n}", content_html=f"<p>Text {n}</p>",
                content_text=f"Text {n}", url=f"https://laden.example/{n}", published=T0 + timedelta(hours=hours),
                media=tuple(Media(u) for u in image_urls))


def fetch(store: Store, *items: Item) -> None:
    store.apply([FetchOutcome("laden-rss", T0, "ok", parsed=Parsed(items), state=FetchState())])


async def test_an_image_is_stored_clean_upright_and_in_every_variant(server, settings, store):
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        media = MediaStore(settings.data_dir, settings.base_dir, store.records.media, fetcher)
        image = await media.store(server.url("/files/foto.jpg"))
    assert (image.width, image.height, image.mime) == (1200, 1600, "image/jpeg")  # turned upright
    folder = media.root / image.sha256[:2] / image.sha256
    sizes = {}
    for path in folder.iterdir():
        with Image.open(path) as im:
            assert not im.getexif() and "exif" not in im.info and "icc_profile" not in im.info
            sizes[path.name] = im.size
    assert sizes == {"480.jpg": (480, 640), "480.webp": (480, 640), "960.jpg": (960, 1280), "960.webp": (960, 1280)}


async def test_what_is_not_an_image_or_too_large_is_refused_and_remembered(server, settings, store):
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        media = MediaStore(settings.data_dir, settings.base_dir, store.records.media, fetcher)
        page = await media.store(server.url("/files/seite.html"))
        huge = await media.store(server.url("/huge?mb=6"))
        local = await media.store("file:///etc/passwd")
        gone = await media.store(server.url("/files/weg.jpg"))
    assert page.sha256 is None and "not a JPEG" in page.error
    assert gone.sha256 is None and gone.error.startswith("HTTP 404: the image is no longer at") and "feed" not in gone.error
    assert huge.sha256 is None and "larger than 5 MiB" in huge.error
    assert local.sha256 is None and "below" in local.error
    assert store.records.media.lookup([server.url("/files/seite.html")])[server.url("/files/seite.html")].error


async def test_ingest_after_fetch_then_garbage_collection(server, settings, store):
    photo, logo = server.url("/files/foto.jpg"), server.url("/files/logo.png")
    fetch(store, post(1, photo, logo), post(2, logo, hours=-1), post(3, hours=-2))
    async with Fetcher(settings.fetcher, base_dir=settings.base_dir) as fetcher:
        media = MediaStore(settings.data_dir, settings.base_dir, store.records.media, fetcher)
        report = await ingest_media(media)
        assert (report.items, report.downloaded, report.failed) == (2, 2, 0)
        assert (await ingest_media(media)).items == 0  # nothing pending any more
    requests = [r.path for r in server.requests]
    assert requests.count("/files/logo.png") == 1  # once per URL, however many origins use it

    pictures = media.pictures([photo, logo, "https://elsewhere.example/x.jpg"])
    assert pictures[photo].src.startswith("/media/") and "960w" in pictures[photo].webp_srcset
    assert pictures[logo].jpeg_srcset.endswith("300w")  # a small image: one variant
    assert pictures["https://elsewhere.example/x.jpg"].src.startswith("/media/")  # signed, on demand

    fetch(store, post(3, hours=-2))  # 1 and 2 deleted at the source: their records are gone
    assert media.collect_garbage(now=T0) == 0  # too young: an ingest might be writing them
    assert media.collect_garbage(now=datetime.now(timezone.utc) + timedelta(days=2)) == 2
    assert list(media.root.glob("??/*")) == [] and store.records.media.lookup([photo, logo]) == {}


def test_pages_serve_only_the_hubs_own_images(server, settings, store):
    photo, other = server.url("/files/foto.jpg"), server.url("/files/zweites.jpg")
    body = f'<p>Text</p><p><img src="{other}" alt="Zweites Bild"></p>'
    fetch(store, Item("laden-rss", "e1", "laden", title="Mit Bildern", content_html=body, content_text="Text",
                      url="https://laden.example/1", published=T0, media=(Media(photo), Media(other))))
    with TestClient(create_app(settings, store)) as client:
        home = client.get("/").text
        sources = re.findall(r'(?:src|srcset)="([^"]+)"', home)
        assert sources and all(s.startswith("/") for part in sources for s in part.split(", "))
        on_demand = re.search(r'src="(/media/[0-9a-f]{32}/[^"]+)"', home).group(1)
        image = client.get(on_demand)  # stored on first view
        assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"

        home = client.get("/").text  # now from the store, with variants
        variant = re.search(r'srcset="(/media/[0-9a-f]{2}/[0-9a-f]{64}/480\.webp) 480w', home).group(1)
        served = client.get(variant)
        assert served.headers["content-type"] == "image/webp" and "immutable" in served.headers["cache-control"]

        record_id = re.search(r'href="/items/(\d+)"', home).group(1)
        page = client.get(f"/items/{record_id}").text
        assert "http://127.0.0.1" not in "".join(re.findall(r'(?:src|srcset)="([^"]+)"', page))
        assert client.get(on_demand[:-4] + "AAAA").status_code == 404  # not our signature
        assert client.get(variant.replace("480.webp", "../../media.key")).status_code == 404


def test_hub_fetch_shows_what_became_of_the_images_and_asks_an_unreachable_host_once(tmp_path):
    """`hub fetch` downloads the new entries' images after the fetch and says how that
    went. A host that refuses the connection is tried once per run, not once per image:
    a town's feed often keeps all its pictures on one host."""
    with socket.socket() as closed:  # a port nobody listens on: every connection is refused
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with FeedServer(host="127.0.0.2", files={"foto.jpg": jpeg_with_exif(800, 600)}) as srv:
        images = [srv.url("/files/foto.jpg")] + [f"{dead}/bild{n}.jpg" for n in range(1, 5)]
        entries = "".join(f"<item><guid>e{n}</guid><title>Beitrag {n}</title><link>https://laden.example/{n}</link>"
                          f'<enclosure url="{url}" type="image/jpeg" length="1"/></item>' for n, url in enumerate(images))
        srv.files["laden.xml"] = f'<?xml version="1.0"?><rss version="2.0"><channel><title>Laden</title>{entries}</channel></rss>'.encode()
        (tmp_path / "config.yaml").write_text(
            f"platform: {{name: Teststadt}}\nstore: {{url: 'sqlite:///{tmp_path}/hub.db'}}\n"
            "fetcher: {allow_private_networks: true, retries: 0, total_timeout: 5}\n"
            f"merchants:\n  - id: laden\n    name: Laden\n    sources:\n      - {{connector: rss, id: laden-rss, url: '{srv.url('/files/laden.xml')}'}}\n")
        done = subprocess.run([sys.executable, "-m", "hub", "fetch", "-c", "config.yaml"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    summary = " ".join(done.stdout.split())  # rich wraps long lines
    assert re.search(r"images: \d+\.\d s for 5 entries \(all from this run\): 5 new images, 1 stored, 4 not; "
                     r"3 of them not tried, their host being unreachable", summary), summary
    assert "127.0.0.1 could not be reached for another image in this run: 127.0.0.1 refused the connection" in summary

    settings = config.load(tmp_path / "config.yaml", env={})
    known = Store(settings.store.url, base_dir=tmp_path).records.media.lookup(images)
    outcomes = sorted((i.error or "stored").split(" ")[0] for i in known.values())
    assert outcomes == ["127.0.0.1", "not", "not", "not", "stored"]  # refused once, then not tried


def _rss(*entries: tuple[int, str]) -> bytes:
    items = "".join(f"<item><guid>e{n}</guid><title>Beitrag {n}</title><link>https://laden.example/{n}</link>"
                    f'<enclosure url="{url}" type="image/jpeg" length="1"/></item>' for n, url in entries)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>Laden</title>{items}</channel></rss>'.encode()


def _town(tmp_path: Path, feed_url: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"platform: {{name: Teststadt}}\nstore: {{url: 'sqlite:///{tmp_path}/hub.db'}}\n"
                    "fetcher: {allow_private_networks: true, retries: 0, total_timeout: 5}\n"
                    "schedule: {shutdown_grace: 1s}\n"
                    f"merchants:\n  - id: laden\n    name: Laden\n    sources:\n"
                    f"      - {{connector: rss, id: laden-rss, url: '{feed_url}'}}\n")
    return path


def _hub_fetch(tmp_path: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "hub", "fetch", "-c", "config.yaml", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return " ".join(done.stdout.split())  # rich wraps long lines


def _waiting(path: Path) -> int:
    settings = config.load(path, env={})
    store = Store(settings.store.url, base_dir=settings.base_dir)
    try:
        return store.records.media.count_pending()
    finally:
        store.close()


def test_hub_fetch_no_images_leaves_them_for_the_first_view_or_a_later_run(tmp_path):
    """`hub fetch` says how long fetching and storing took and how long the images took;
    `--no-images` skips the images: they wait, a page loads one on its first view, and the
    next `hub fetch` (every feed answering 304) names them as images of earlier runs."""
    files = {f"bild{n}.jpg": jpeg_with_exif(400 + n, 300) for n in range(3)}
    with FeedServer(files=files) as srv:
        srv.files["laden.xml"] = _rss(*((n, srv.url(f"/files/bild{n}.jpg")) for n in range(3)))
        path = _town(tmp_path, srv.url("/files/laden.xml"))

        skipped = _hub_fetch(tmp_path, "--no-images")
        assert re.search(r"fetched and stored 1 sources in \d+\.\d s", skipped), skipped
        assert ("images skipped (--no-images): 3 entries wait for their images (3 of this run); `hub run` "
                "downloads them, or they load on first view") in skipped
        assert not [r for r in srv.requests if r.path.endswith(".jpg")] and _waiting(path) == 3

        settings = config.load(path, env={})
        store = Store(settings.store.url, base_dir=settings.base_dir)
        with TestClient(create_app(settings, store)) as client:  # a resident opens the page
            on_demand = re.search(r'src="(/media/[0-9a-f]{32}/[^"]+)"', client.get("/").text).group(1)
            image = client.get(on_demand)
            assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
        store.close()

        later = _hub_fetch(tmp_path)
        images = sorted(r.path for r in srv.requests if r.path.endswith(".jpg"))
    assert re.search(r"fetched and stored 1 sources in \d+\.\d s", later), later
    # one of the three was stored on its first view: two are new to the media store
    assert re.search(r"images: \d+\.\d s for 3 entries \(all from earlier runs\): 2 new images, all stored", later), later
    assert images == [f"/files/bild{n}.jpg" for n in range(3)] and _waiting(path) == 0


def test_hub_run_downloads_the_images_hub_fetch_no_images_left(tmp_path):
    from tests.test_schedule_processes import HubRun, wait_until

    files = {f"bild{n}.jpg": jpeg_with_exif(400 + n, 300) for n in range(3)}
    with FeedServer(files=files) as srv:
        srv.files["laden.xml"] = _rss(*((n, srv.url(f"/files/bild{n}.jpg")) for n in range(3)))
        path = _town(tmp_path, srv.url("/files/laden.xml"))
        _hub_fetch(tmp_path, "--no-images")
        assert _waiting(path) == 3
        run = HubRun(path)
        try:
            wait_until(lambda: _waiting(path) == 0, 30)  # the media job runs as `hub run` starts
        finally:
            code, output = run.stop()
        images = sorted(r.path for r in srv.requests if r.path.endswith(".jpg"))
    assert code == 0, output
    assert images == [f"/files/bild{n}.jpg" for n in range(3)]


def test_a_host_an_earlier_run_could_not_reach_is_not_asked_again_within_the_hour(tmp_path):
    """A run that finds an image host down (503 here, as DNS failures and timeouts) asks it
    once; the next run, minutes later, does not ask it again for the new entries' images:
    each try of a host that is down can take its timeouts again."""
    with FeedServer(host="127.0.0.3") as down, FeedServer(host="127.0.0.2") as srv:
        entries = [(n, down.url(f"/status/503?bild={n}")) for n in range(2)]
        srv.files["laden.xml"] = _rss(*entries)
        _town(tmp_path, srv.url("/files/laden.xml"))
        first = _hub_fetch(tmp_path)
        assert len(down.requests) == 1, down.requests  # the first image; the second is not tried
        assert "127.0.0.3 could not be reached for another image in this run: HTTP 503" in first, first

        srv.files["laden.xml"] = _rss(*entries, *((n, down.url(f"/status/503?bild={n}")) for n in (2, 3)))
        second = _hub_fetch(tmp_path)
    assert len(down.requests) == 1, down.requests
    assert re.search(r"2 new images, 0 stored, 2 not; 2 of them not tried, their host being unreachable", second), second
    assert re.search(r"127\.0\.0\.3 could not be reached at \d{4}-\d\d-\d\d \d\d:\d\d UTC, so it is not asked again "
                     r"before \d\d:\d\d UTC: HTTP 503", second), second


def test_an_unreachable_host_is_asked_again_an_hour_after_its_last_try(store, settings):
    media = MediaStore(settings.data_dir, settings.base_dir, store.records.media)
    tried = StoredImage("https://cdn.laden.example/1.jpg", None, None, None, None, "cannot resolve host", unreachable=True)
    given_up = StoredImage("https://cdn.laden.example/2.jpg", None, None, None, None, "not tried: ...")
    store.records.media.save([tried], T0)
    store.records.media.save([given_up], T0 + timedelta(minutes=30))  # not a try: the hour counts from T0
    assert list(media.hosts_down_earlier(T0 + timedelta(minutes=59))) == ["cdn.laden.example"]
    assert media.hosts_down_earlier(T0 + timedelta(minutes=61)) == {}
    assert store.records.media.lookup([tried.url])[tried.url].unreachable
