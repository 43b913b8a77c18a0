"""Images for residents, always served by the hub itself.

Residents' browsers must never load anything from a third party (their IP address would
leak; LG München I, 3 O 17493/20). Pages therefore point every image at
`/media/{signature}/{encoded url}`; the hub fetches the image once through its hardened
fetcher, checks that it really is an image, caches it on disk and serves it. The signature
(HMAC) makes sure the hub fetches only URLs it put on its own pages, so the route cannot be
used as an open proxy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hub.errors import FetchError, HubError
from hub.http import Fetcher

MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Magic bytes -> media type. SVG is left out on purpose: it can carry scripts.
_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


class NotAnImage(HubError):
    code = "not_an_image"


@dataclass(frozen=True)
class Image:
    body: bytes
    media_type: str


class MediaProxy:
    def __init__(self, data_dir: Path, base_dir: Path, fetcher: Fetcher | None = None) -> None:
        self.cache_dir = data_dir / "media"
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.base_dir = base_dir.resolve()
        self.fetcher = fetcher
        self._key = _load_or_create_key(data_dir / "media.key")

    def path_for(self, url: str) -> str:
        """The hub-local path residents' browsers load `url` from."""
        encoded = base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")
        return f"/media/{self._sign(url)}/{encoded}"

    def url_from(self, signature: str, encoded: str) -> str | None:
        """The original URL if the signature is ours, else None."""
        try:
            url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return url if hmac.compare_digest(signature, self._sign(url)) else None

    async def get(self, url: str) -> Image:
        """The image at `url`, from the cache or fetched once. Raises NotAnImage/FetchError."""
        cached = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()
        if cached.exists():
            body = cached.read_bytes()
            return Image(body, _sniff(body))
        body = await self._load(url)
        media_type = _sniff(body)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(body)
        tmp.replace(cached)  # atomic: a reader never sees half an image
        return Image(body, media_type)

    async def _load(self, url: str) -> bytes:
        if url.startswith("file:"):
            return self._read_local(url)
        if self.fetcher is None:
            raise FetchError("no fetcher configured for remote images")
        resp = await self.fetcher.get(url, max_bytes=MAX_IMAGE_BYTES, accept="image/*")
        return resp.body

    def _read_local(self, url: str) -> bytes:
        """file: images exist for the bundled demo town; only files below the config's
        folder are served."""
        path = Path(unquote(urlsplit(url).path)).resolve()
        if not path.is_relative_to(self.base_dir) or not path.is_file():
            raise NotAnImage(f"{url} is not an image below {self.base_dir}")
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise NotAnImage(f"{url} is larger than {MAX_IMAGE_BYTES} bytes")
        return path.read_bytes()

    def _sign(self, url: str) -> str:
        return hmac.new(self._key, url.encode(), hashlib.sha256).hexdigest()[:32]


def _sniff(body: bytes) -> str:
    for magic, media_type in _SIGNATURES:
        if body.startswith(magic):
            return media_type
    if body[:4] == b"RIFF" and body[8:12] == b"WEBP":
        return "image/webp"
    if body[4:12] in (b"ftypavif", b"ftypavis"):
        return "image/avif"
    raise NotAnImage("the response is not a JPEG, PNG, GIF, WebP or AVIF image")


def _load_or_create_key(path: Path) -> bytes:
    """One key per installation, so every worker process signs alike."""
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(key)
    tmp.chmod(0o600)
    try:
        tmp.rename(path) if not path.exists() else tmp.unlink()
    except FileExistsError:
        tmp.unlink()
    return path.read_bytes()
