"""Where a task's image lives: Label Studio local files, an http(s) URL, or a path we own.

Anything else (another scheme, a path outside LABELER_DATA_ROOT and LABELER_HOME, `..` tricks)
is refused, so a task cannot make the backend read arbitrary files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import httpx
import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from db.settings import Settings

LOCAL_FILES = "/data/local-files/"
MAX_BYTES = 50 * 1024 * 1024


class ImageRefused(ValueError):
    """The reference is not one we may read (4xx to the caller)."""


class ImageUnavailable(RuntimeError):
    """The reference is fine but the image could not be fetched or decoded (also a 4xx)."""


@dataclass(frozen=True)
class StudioAccess:
    """What /setup told us: where Label Studio is and a token to fetch its files."""

    hostname: str | None = None
    token: str | None = None


@dataclass(frozen=True)
class ImageRef:
    local: Path | None
    url: str | None

    def home_relative(self, home: Path) -> str | None:
        """The path as stored in images.png_path, if the file is one of ours."""
        if self.local is None or not self.local.is_relative_to(home):
            return None
        return self.local.relative_to(home).as_posix()


def resolve(ref: str, settings: Settings, studio: StudioAccess) -> ImageRef:
    parsed = urlparse(ref)
    ours = not parsed.netloc or parsed.netloc == urlparse(studio.hostname or "").netloc
    if parsed.path.startswith(LOCAL_FILES) and ours:
        rel = (parse_qs(parsed.query).get("d") or [""])[0]
        local = _inside(settings.home / rel, [settings.home])
        return ImageRef(local, None) if local.is_file() else ImageRef(None, _absolute(ref, studio))
    if parsed.scheme in ("http", "https"):
        return ImageRef(None, ref)
    if parsed.scheme or parsed.netloc or ref.startswith("/data/"):
        raise ImageRefused(
            f"unsupported image reference {ref[:200]!r}: use a Label Studio local-files URL, "
            "http(s), or a path under LABELER_DATA_ROOT or LABELER_HOME"
        )
    base = Path(ref) if Path(ref).is_absolute() else settings.data_root / ref
    return ImageRef(_inside(base, [settings.data_root, settings.home]), None)


def load_rgb(ref: ImageRef, studio: StudioAccess) -> npt.NDArray[np.uint8]:
    """Decode to RGB; corrupt or missing images raise ImageUnavailable, never a 500."""
    try:
        if ref.local is not None:
            if not ref.local.is_file():
                raise ImageUnavailable(f"image file not found: {ref.local.name}")
            data = ref.local.read_bytes()
        else:
            assert ref.url is not None
            data = _fetch(ref.url, studio)
        with Image.open(io.BytesIO(data)) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageUnavailable(f"image could not be decoded: {exc}") from exc


def _inside(path: Path, roots: list[Path]) -> Path:
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root.resolve()) for root in roots):
        raise ImageRefused("image path is outside LABELER_DATA_ROOT and LABELER_HOME")
    return resolved


def _absolute(ref: str, studio: StudioAccess) -> str:
    if urlparse(ref).scheme:
        return ref
    if not studio.hostname:
        raise ImageUnavailable("image is not on local disk and Label Studio's address is unknown")
    return urljoin(studio.hostname.rstrip("/") + "/", ref.lstrip("/"))


def _fetch(url: str, studio: StudioAccess) -> bytes:
    headers = {}
    if (
        studio.token
        and studio.hostname
        and urlparse(url).netloc == urlparse(studio.hostname).netloc
    ):
        headers["Authorization"] = f"Token {studio.token}"  # never sent to another host
    try:
        response = httpx.get(url, headers=headers, timeout=30.0, follow_redirects=False)
    except httpx.HTTPError as exc:
        raise ImageUnavailable(f"image could not be fetched from {urlparse(url).netloc}") from exc
    if response.status_code != 200:
        raise ImageUnavailable(f"image fetch answered HTTP {response.status_code}")
    if len(response.content) > MAX_BYTES:
        raise ImageUnavailable("image is larger than 50 MB")
    return response.content
