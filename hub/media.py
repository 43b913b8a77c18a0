"""The media store: every image residents see is served by the hub itself.

Residents' browsers must never load anything from a third party (their IP address would
leak; LG München I, 3 O 17493/20), and Facebook's and Instagram's image URLs expire within
days. So images are downloaded at ingest (`ingest_pending`, after each fetch) through the
hub's hardened fetcher, capped at 5 MiB, checked to be JPEG, PNG, GIF or WebP, decoded with
Pillow, turned upright and re-encoded without EXIF (no camera serials or GPS positions), in
two widths (480 and 960 px) as JPEG and WebP, and stored under their content's SHA-256:

    data/media/<first two hex digits>/<sha256>/{480,960}.{jpg,webp}

served at `/media/<first two>/<sha256>/<width>.<ext>` with a year's immutable caching. The
`media` table maps each original URL to its content; `collect_garbage` removes what no live
record uses any more.

An image a page needs before ingest got to it (or one that failed) is loaded on demand
through `/media/{signature}/{encoded url}`, stored the same way. The signature (HMAC with a
per-installation key) makes the hub fetch only URLs it put on its own pages, so the route is
no open proxy. `file:` URLs exist for the bundled demo town and are read only below the
config's folder.

A host that cannot be reached (DNS, refused, timeout, TLS, 429, 503) is asked once: its other
images are given up on without asking, in that run and in the runs of the next
HOST_RETRY_AFTER (the media table remembers the failed try). They load on first view.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import logging
import re
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Mapping
from urllib.parse import unquote, urlsplit

from PIL import Image, ImageOps, UnidentifiedImageError

from hub.errors import FetchError, HubError, TooLarge
from hub.http import Fetcher
from hub.identity import key_of
from hub.store.mediadb import MediaIndex, StoredImage

log = logging.getLogger("hub.media")
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 5 MiB file that decodes to more is a decompression bomb
WIDTHS = (480, 960)  # ascending
FORMATS = {"jpg": ("JPEG", {"quality": 82, "optimize": True, "progressive": True}),
           "webp": ("WEBP", {"quality": 80, "method": 4})}
INGEST_BATCH = 200
INGEST_ROUNDS = 50  # batches per `ingest_media` call: 10,000 entries; the rest waits for the next call
CONCURRENT_DOWNLOADS = 4
GC_GRACE = timedelta(days=1)  # files younger than this are never collected: an ingest may be writing them
# A host no image download could reach (DNS, refused, timeout, TLS, 429, 503) is not asked
# again for this long, by this run or the next ones: each try of a host that is down can
# take its DNS and connect timeouts again, and `hub fetch` runs one after the other.
HOST_RETRY_AFTER = timedelta(hours=1)
# Magic bytes -> media type. SVG is left out on purpose: it can carry scripts.
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
               (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
_VARIANT = re.compile(r"^(480|960)\.(jpg|webp)$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_NOT_TRIED = "not tried: "


class NotAnImage(HubError):
    code = "not_an_image"


@dataclass(frozen=True)
class Picture:
    """How a page shows one image: a JPEG `src`, srcsets for both formats, and the size."""

    src: str
    jpeg_srcset: str = ""
    webp_srcset: str = ""
    width: int | None = None
    height: int | None = None


@dataclass
class IngestReport:
    downloaded: int = 0
    failed: int = 0  # not tried included
    items: int = 0  # origins whose images were seen to
    unreachable: dict[str, str] = field(default_factory=dict)  # host -> why it was given up on
    not_tried: int = 0  # images of hosts given up on, not asked at all
    # Hosts earlier runs could not reach (host -> why), read when first needed: not asked before HOST_RETRY_AFTER
    earlier: dict[str, str] | None = field(default=None, repr=False)


class MediaStore:
    def __init__(self, data_dir: Path, base_dir: Path, index: MediaIndex, fetcher: Fetcher | None = None) -> None:
        self.root = data_dir / "media"
        self.root.mkdir(parents=True, exist_ok=True)
        self.base_dir = base_dir.resolve()
        self.index = index
        self.fetcher = fetcher
        self._key = _load_or_create_key(data_dir / "media.key")
        # How many times this process stored images: pages show stored images as variants
        # (srcset) and others through the on-demand route, so a page rendered before is stale.
        self.saves = 0

    # --- what pages show ------------------------------------------------------------------

    def pictures(self, urls: Iterable[str]) -> dict[str, Picture]:
        """How to show each of `urls`: stored variants, else the signed on-demand path."""
        urls = list(dict.fromkeys(urls))
        stored = self.index.lookup(urls)
        return {u: self._picture(stored[u]) if u in stored and stored[u].sha256 else Picture(self.path_for(u))
                for u in urls}

    def _picture(self, image: StoredImage) -> Picture:
        assert image.sha256 is not None
        base = f"/media/{image.sha256[:2]}/{image.sha256}"
        actual = {min(w, image.width or w): w for w in reversed(WIDTHS)}  # a small image: one variant
        srcset = {ext: ", ".join(f"{base}/{w}.{ext} {px}w" for px, w in sorted(actual.items())) for ext in FORMATS}
        return Picture(f"{base}/{WIDTHS[-1]}.jpg", srcset["jpg"], srcset["webp"], image.width, image.height)

    def path_for(self, url: str) -> str:
        """The signed on-demand path for `url`."""
        encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        return f"/media/{self._sign(url)}/{encoded}"

    def url_from(self, signature: str, encoded: str) -> str | None:
        """The original URL if the signature is ours, else None."""
        try:
            url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return url if hmac.compare_digest(signature, self._sign(url)) else None

    def file(self, shard: str, sha: str, name: str) -> Path | None:
        """A stored variant's file, if the name is one and it exists."""
        if not (_SHA.match(sha) and sha[:2] == shard and _VARIANT.match(name)):
            return None
        path = self.root / shard / sha / name
        return path if path.is_file() else None

    def _sign(self, url: str) -> str:
        return hmac.new(self._key, url.encode(), hashlib.sha256).hexdigest()[:32]

    # --- ingest -----------------------------------------------------------------------------

    async def ingest_pending(self, limit: int = INGEST_BATCH, unreachable: dict[str, str] | None = None,
                             earlier: dict[str, str] | None = None) -> IngestReport:
        """Download the images of origins stored since the last run (at most `limit` origins).
        `unreachable` (host -> why) carries the hosts given up on across the rounds of a run;
        `earlier`, the hosts earlier runs could not reach (read from the index if None)."""
        report = IngestReport(unreachable={} if unreachable is None else unreachable, earlier=earlier)
        pending = await asyncio.to_thread(self.index.pending, limit)
        if not pending:
            return report
        if report.earlier is None:
            report.earlier = await asyncio.to_thread(self.hosts_down_earlier, datetime.now(timezone.utc))
        down = report.earlier
        urls = list(dict.fromkeys(u for _, us in pending for u in us))
        known = await asyncio.to_thread(self.index.lookup, urls)
        slots = asyncio.Semaphore(CONCURRENT_DOWNLOADS)
        images: list[StoredImage] = []

        async def one(url: str) -> None:
            async with slots:
                images.append(await self._obtain(url, report.unreachable, down))

        async def host(first: str, *rest: str) -> None:
            await one(first)  # a host that is down is found out by one request, not by several at once
            await asyncio.gather(*map(one, rest))

        by_host: dict[str | None, list[str]] = {}
        for url in urls:
            if url not in known:
                by_host.setdefault(urlsplit(url).hostname, []).append(url)
        await asyncio.gather(*(host(*host_urls) for host_urls in by_host.values()))
        await asyncio.to_thread(self.index.save, images, datetime.now(timezone.utc), [i for i, _ in pending])
        self.saves += 1
        report.downloaded = sum(i.sha256 is not None for i in images)
        report.failed = len(images) - report.downloaded
        report.not_tried = sum(i.error is not None and i.error.startswith(_NOT_TRIED) for i in images)
        report.items = len(pending)
        return report

    def hosts_down_earlier(self, now: datetime) -> dict[str, str]:
        """Hosts a download could not reach less than HOST_RETRY_AFTER before `now` (host ->
        why): `ingest_pending` gives their images up without asking, as it does in the run
        that found them down. Those images load on first view (the on-demand route asks)."""
        down = self.index.unreachable_hosts(now - HOST_RETRY_AFTER)
        return {host: f"{host} could not be reached at {at:%Y-%m-%d %H:%M} UTC, so it is not asked again "
                      f"before {at + HOST_RETRY_AFTER:%H:%M} UTC: {why}" for host, (at, why) in down.items()}

    async def store(self, url: str) -> StoredImage:
        """Download, check, clean and store the image at `url`; a failure is recorded too,
        so it is not tried on every run (the on-demand route tries again)."""
        image = await self._obtain(url, {})
        await asyncio.to_thread(self.index.save, [image], datetime.now(timezone.utc))
        self.saves += 1
        return image

    async def _obtain(self, url: str, unreachable: dict[str, str], earlier: Mapping[str, str] = {}) -> StoredImage:
        """The image at `url`, downloaded and its variants written; or what went wrong. A host
        that could not be reached is not asked again in the same run (`unreachable`), nor
        within HOST_RETRY_AFTER of an earlier run's try (`earlier`): a feed's images often
        share one host, and each DNS failure or connect timeout takes its time again. Only
        the image that was tried is recorded as `unreachable`: the host's retry time
        counts from it."""
        host = urlsplit(url).hostname
        if host in earlier and host not in unreachable:
            unreachable[host] = earlier[host]
        if host in unreachable:
            return StoredImage(url, None, None, None, None, f"{_NOT_TRIED}{unreachable[host]}")
        try:
            body = await self._download(url)
            sha, width, height, mime = await asyncio.to_thread(self._write_variants, body)
            return StoredImage(url, sha, width, height, mime)
        except HubError as exc:
            log.info("image %s not stored: %s", url, exc)
            down = bool(host) and _host_wide(exc)
            if down:
                unreachable.setdefault(host, f"{host} could not be reached for another image in this run: {exc}")
            return StoredImage(url, None, None, None, None, str(exc), unreachable=down)

    async def variant_for(self, url: str) -> Path:
        """The 960 px JPEG of `url`, stored now if need be (the on-demand route)."""
        known = (await asyncio.to_thread(self.index.lookup, [url])).get(url)
        if known is None or known.sha256 is None or self.file(known.sha256[:2], known.sha256, "960.jpg") is None:
            known = await self.store(url)
        if known.sha256 is None:
            raise NotAnImage(known.error or f"{url} is not available")
        path = self.file(known.sha256[:2], known.sha256, f"{WIDTHS[-1]}.jpg")
        if path is None:
            raise NotAnImage(f"{url}: stored variants are missing")
        return path

    async def _download(self, url: str) -> bytes:
        if url.lower().startswith("file:"):
            return self._read_local(url)
        if self.fetcher is None:
            raise FetchError("no fetcher configured for remote images")
        try:
            resp = await self.fetcher.get(url, max_bytes=MAX_IMAGE_BYTES, accept="image/*")
        except FetchError as exc:
            if exc.status in (404, 410):  # the fetcher's own words are about feeds
                raise NotAnImage(f"HTTP {exc.status}: the image is no longer at {url}",
                                 hint="the merchant removed or moved it; the record shows no picture") from exc
            raise
        return resp.body

    def _read_local(self, url: str) -> bytes:
        """file: images exist for the bundled demo town; only files below the config's
        folder are read."""
        path = Path(unquote(urlsplit(url).path)).resolve()
        if not path.is_relative_to(self.base_dir) or not path.is_file():
            raise NotAnImage(f"{url} is not an image below {self.base_dir}")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise NotAnImage(f"{url} is larger than {MAX_IMAGE_BYTES} bytes")
        return path.read_bytes()

    def _write_variants(self, body: bytes) -> tuple[str, int, int, str]:
        """Store the cleaned variants of `body` under its hash (CPU work: runs in a thread)."""
        mime = _sniff(body)
        sha = hashlib.sha256(body).hexdigest()
        folder = self.root / sha[:2] / sha
        with _opened(body) as im:
            width, height = im.size
            if not all((folder / f"{w}.{ext}").is_file() for w in WIDTHS for ext in FORMATS):
                _render(im, folder)
        return sha, width, height, mime

    # --- garbage collection ---------------------------------------------------------------------

    def collect_garbage(self, now: datetime | None = None) -> int:
        """Remove stored images no live origin uses any more; returns how many were removed."""
        now = now or datetime.now(timezone.utc)
        used = {key_of(u) for u in self.index.used_urls()}
        keep = self.index.forget_except(used, now - GC_GRACE)
        removed = 0
        cutoff = now.timestamp() - GC_GRACE.total_seconds()
        for folder in self.root.glob("??/*"):
            if folder.name not in keep and _SHA.match(folder.name) and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed


class _opened:
    """Pillow's image, checked: a known format, not a decompression bomb, upright."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.image: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        try:
            image = Image.open(io.BytesIO(self.body))
            if image.format not in ("JPEG", "PNG", "GIF", "WEBP"):
                raise NotAnImage(f"unsupported image format {image.format}")
            if image.width * image.height > MAX_PIXELS:
                raise NotAnImage(f"the image has {image.width}x{image.height} pixels, more than {MAX_PIXELS}")
            image.seek(0)  # the first frame of an animation
            self.image = ImageOps.exif_transpose(image)  # keep the orientation EXIF gave, then drop EXIF
            self.image.load()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise NotAnImage(f"the image cannot be decoded: {exc}") from exc
        return self.image

    def __exit__(self, *exc_info: object) -> None:
        if self.image is not None:
            self.image.close()


def _render(im: Image.Image, folder: Path) -> None:
    """Write every variant into `folder`, atomically: a reader never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    rgb = _flattened(im)
    for width in WIDTHS:  # "480" and "960" are size classes: never wider than the original
        scaled = rgb if width >= rgb.width else rgb.resize((width, max(1, round(rgb.height * width / rgb.width))),
                                                         Image.Resampling.LANCZOS)
        for ext, (fmt, options) in FORMATS.items():
            tmp = folder / f".{width}.{ext}.{secrets.token_hex(4)}"
            scaled.save(tmp, fmt, **options)  # no exif=, no icc_profile=: nothing of the camera survives
            tmp.replace(folder / f"{width}.{ext}")


def _flattened(im: Image.Image) -> Image.Image:
    """RGB on white: JPEG has no transparency, and one picture for both formats keeps them alike."""
    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im.convert("RGB")


def _sniff(body: bytes) -> str:
    for magic, media_type in _SIGNATURES:
        if body.startswith(magic):
            return media_type
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    raise NotAnImage("the response is not a JPEG, PNG, GIF or WebP image")


def _load_or_create_key(path: Path) -> bytes:
    """One key per installation, so every worker process signs alike."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(f".{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(key)
    tmp.chmod(0o600)
    try:
        tmp.rename(path) if not path.exists() else tmp.unlink()
    except FileExistsError:
        tmp.unlink()
    return path.read_bytes()


async def ingest_media(store_media: MediaStore, rounds: int = INGEST_ROUNDS,
                       on_round: Callable[[IngestReport], None] | None = None,
                       stop: asyncio.Event | None = None) -> IngestReport:
    """Work the backlog of pending images, batch by batch, at most `rounds` batches (a task
    function for `hub fetch` and the scheduler); `on_round` hears of each batch (a progress
    bar). Once `stop` is set no batch starts; each batch is recorded in one transaction."""
    total = IngestReport()
    for _ in range(rounds):
        if stop is not None and stop.is_set():
            break
        report = await store_media.ingest_pending(unreachable=total.unreachable, earlier=total.earlier)
        total.earlier = report.earlier
        if not report.items:
            break
        total.downloaded += report.downloaded
        total.failed += report.failed
        total.not_tried += report.not_tried
        total.items += report.items
        if on_round:
            on_round(report)
    return total


def _host_wide(exc: HubError) -> bool:
    """A failure every other image on the same host would meet now: no connection (DNS,
    refused, timeout, TLS, an address the guard blocks) or an answer to slow down."""
    return isinstance(exc, FetchError) and not isinstance(exc, TooLarge) and exc.status in (None, 429, 503)


async def collect_media_garbage(store_media: MediaStore) -> int:
    """`collect_garbage` off the event loop (a task function for the scheduler)."""
    removed = await asyncio.to_thread(store_media.collect_garbage)
    if removed:
        log.info("removed %d stored images no record uses any more", removed)
    return removed
