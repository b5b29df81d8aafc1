"""Item 4 of issue 12: pixels are counted from the header before any is decoded (413 at once)."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from ml_backend.server.errors import ImageTooLarge, ImageUnavailable
from ml_backend.server.images import decode_rgb
from tests.ml_backend.server.support import World, task


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that claims width x height (its pixel data is one compressed row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * min(width + 1, 4096))  # never decoded: a header is enough
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_huge_images_are_a_413_at_once_and_never_decoded(
    backend: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = backend.client()
    for side in (12_000, 30_000, 65_000):
        bomb = backend.settings.data_root / f"bomb{side}.png"
        bomb.write_bytes(png_header(side, side))
        start = time.perf_counter()
        response = client.post("/predict", json={"tasks": [task(str(bomb))]})
        assert response.status_code == 413, (side, response.text)
        assert time.perf_counter() - start < 2.0
        assert "pixels" in response.json()["detail"] and str(bomb) not in response.text

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("decoded an image over the pixel cap")

    small_cap = backend.client(max_image_pixels=100 * 100)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    real = str(backend.png(backend.ids[3]))
    response = small_cap.post("/predict", json={"tasks": [task(real)]})
    assert response.status_code == 413, response.text


def test_decode_refuses_other_formats_and_garbage(tmp_path: Path) -> None:
    gif = tmp_path / "a.gif"
    Image.new("RGB", (4, 4)).save(gif)
    for data in (gif.read_bytes(), b"", b"\x89PNG\r\n\x1a\nnot really", png_header(4, 4)[:30]):
        with pytest.raises(ImageUnavailable):
            decode_rgb(data, 10_000)
    with pytest.raises(ImageTooLarge):
        decode_rgb(png_header(2**31 - 1, 2**31 - 1), 10_000)
    assert decode_rgb(_png(tmp_path, 5, 3), 15).shape == (3, 5, 3)


def _png(tmp_path: Path, width: int, height: int) -> bytes:
    path = tmp_path / "ok.png"
    Image.new("L", (width, height)).save(path)
    return path.read_bytes()
