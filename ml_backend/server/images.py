"""Where a task's image lives, and its bytes and pixels under the backend's limits.

A reference is a Label Studio local-files URL, an http(s) URL, or a path. Local paths go through
`LocalFiles` (what we may open, decided before opening), URLs through `FetchPolicy` (which hosts),
and every image is decoded only after its width x height passed `max_image_pixels` (PIL reads the
header first), so a small PNG of 30000x30000 is a 413, not gigabytes of memory.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from ml_backend.server.errors import ImageRefused, ImageTooLarge, ImageUnavailable
from ml_backend.server.fetch import HOST_REFUSED, FetchPolicy, fetch, origin_of
from ml_backend.server.local_files import LocalFile, LocalFiles

LOCAL_FILES = "/data/local-files/"
UPLOADS = "/data/upload/"  # files uploaded into Label Studio: fetched from it, with its token
DECODERS = ("PNG", "JPEG")
UNSUPPORTED = (
    "unsupported image reference: use a Label Studio local-files URL, an http(s) URL of an "
    "allowed host, or a path under LABELER_DATA_ROOT"
)
UNDECODABLE = "image could not be decoded (PNG or JPEG expected)"


@dataclass(frozen=True)
class ImageRef:
    """A local file we may read (it may be missing), or a URL of an allowed host."""

    local: LocalFile | None
    url: str | None

    def home_relative(self, home: Path) -> str | None:
        """The path as stored in images.png_path, if the file is one of ours and exists."""
        if self.local is None or not self.local.exists:
            return None
        if not self.local.path.is_relative_to(home):
            return None
        return self.local.path.relative_to(home).as_posix()


def resolve(ref: str, files: LocalFiles, fetching: FetchPolicy) -> ImageRef:
    """Judge a reference without opening anything; ImageRefused when it is not ours to read."""
    if "\x00" in ref:
        raise ImageRefused(UNSUPPORTED)
    try:
        parsed = urlsplit(ref)
    except ValueError as exc:  # "http://[::1" and the like
        raise ImageRefused(UNSUPPORTED) from exc
    studio = fetching.studio
    ours = not parsed.netloc or origin_of(ref) == studio
    if parsed.path.startswith(LOCAL_FILES) and ours and parsed.scheme in ("", "http", "https"):
        rel = (parse_qs(parsed.query).get("d") or [""])[0]
        if not rel:
            raise ImageRefused(UNSUPPORTED)
        local = files.judge(files.home / rel)
        if local.exists:
            return ImageRef(local, None)
        return ImageRef(None, urljoin(fetching.studio_url.rstrip("/") + "/", ref.lstrip("/")))
    if parsed.path.startswith(UPLOADS) and ours and parsed.scheme in ("", "http", "https"):
        return ImageRef(None, urljoin(fetching.studio_url.rstrip("/") + "/", ref.lstrip("/")))
    if parsed.scheme in ("http", "https"):
        if not fetching.allows(ref):
            raise ImageRefused(HOST_REFUSED)
        return ImageRef(None, ref)
    if parsed.scheme or parsed.netloc or ref.startswith("/data/"):
        raise ImageRefused(UNSUPPORTED)
    path = Path(ref)
    return ImageRef(files.judge(path if path.is_absolute() else files.data_root / ref), None)


def read_bytes(ref: ImageRef, files: LocalFiles, fetching: FetchPolicy) -> bytes:
    """The image's encoded bytes, capped at `max_download_bytes` wherever they come from."""
    if ref.local is not None:
        return files.read(ref.local, fetching.max_bytes)
    if ref.url is None:
        raise ImageUnavailable("image reference has neither a file nor a URL")
    return fetch(ref.url, fetching)


def decode_rgb(data: bytes, max_pixels: int) -> npt.NDArray[np.uint8]:
    """RGB pixels; the size is checked from the header before any pixel is decoded."""
    try:
        with warnings.catch_warnings():  # PIL warns on size at open; ours is the limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=DECODERS)
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"image has {width}x{height} pixels; at most {max_pixels} are decoded"
                )
            return np.asarray(img.convert("RGB"))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"image has more than {max_pixels} pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageUnavailable(UNDECODABLE) from exc
    except MemoryError as exc:
        raise ImageTooLarge("image is too large to decode") from exc
