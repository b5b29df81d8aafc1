"""Unlabeled clips: frame folders, loose images and videos become groups; bad files are counted."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ml_backend.encoder.frames import (
    VideoDecoderMissingError,
    even_indices,
    load_frames,
    square_resize,
)

SIZE = 32


def _png(path: Path, value: int, *, colour: bool = False) -> None:
    """A 40 x 60 frame of one grey level (or a red one): its centre pixel identifies it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grey = np.full((40, 60), value, np.uint8)
    arr = np.stack([grey, grey // 2, np.zeros_like(grey)], axis=2) if colour else grey
    Image.fromarray(arr).save(path)


def _video(path: Path, n: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (48, 32))
    assert writer.isOpened()
    for k in range(n):
        writer.write(np.full((32, 48, 3), 20 * k, np.uint8))
    writer.release()


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "unlabeled"
    for i in range(1, 13):  # natural order: frame_2 before frame_10
        _png(root / "patient1" / "clip_a" / f"frame_{i}.png", 10 * i)
    for i in range(3):
        _png(root / "clip_b" / f"{i}.png", 100 + i, colour=True)
    _png(root / "loose.png", 77)
    (root / "broken.png").write_bytes(b"not a png at all")
    (root / "notes.txt").write_text("ignored")
    outside = tmp_path / "outside"
    _png(outside / "secret.png", 5)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    return root


def test_frame_folders_and_loose_images_are_clips(
    media: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        found = load_frames(media, size=SIZE, max_frames=5)
    ids = [c.clip_id for c in found.clips]
    assert ids == ["loose.png", "clip_b", "patient1/clip_a"]
    assert [c.kind for c in found.clips] == ["image", "frames", "frames"]
    assert [len(c.frames) for c in found.clips] == [1, 3, 5]
    assert found.clips[2].available == 12
    assert found.group_ids() == [0, 1, 1, 1, 2, 2, 2, 2, 2]
    assert {s.path for s in found.skipped} == {"broken.png", "escape"}
    assert found.summary() == {
        "clips": 3,
        "frames": 9,
        "by_kind": {"video": 0, "frames": 2, "image": 1},
        "skipped": 2,
    }
    assert "broken.png" in caplog.text and "escape" in caplog.text


def test_frames_are_sampled_evenly_in_natural_order(media: Path) -> None:
    clip = load_frames(media, size=SIZE, max_frames=5).clips[2]
    centres = [int(f[0, SIZE // 2, SIZE // 2]) for f in clip.frames]
    assert centres == [10, 40, 70, 90, 120]  # frames 1, 4, 7, 9, 12 of 12


def test_grey_is_stored_once_and_served_as_three_channels(media: Path) -> None:
    found = load_frames(media, size=SIZE)
    grey, colour = found.clips[0].frames[0], found.clips[1].frames[0]
    assert grey.shape == (1, SIZE, SIZE) and grey.dtype == torch.uint8
    assert colour.shape == (3, SIZE, SIZE)
    served = found.frame(0, 0)
    assert served.shape == (3, SIZE, SIZE) and served.dtype == torch.float32
    assert float(served[:, SIZE // 2, SIZE // 2].mean()) == pytest.approx(77 / 255)
    assert float(served.max()) <= 1.0


def test_square_resize_pads_instead_of_stretching() -> None:
    wide = torch.full((1, 20, 40), 200, dtype=torch.uint8)
    out = square_resize(wide, 32)
    assert out.shape == (1, 32, 32)
    assert int(out[0, :7].max()) == 0 and int(out[0, 25:].max()) == 0  # black bands
    assert int(out[0, 9:23].min()) == 200


def test_even_indices_cover_the_clip() -> None:
    assert even_indices(3, 5) == [0, 1, 2]
    assert even_indices(100, 4) == [0, 33, 66, 99]
    assert even_indices(9, 1) == [4]


def test_videos_are_clips_and_a_corrupt_video_is_skipped(media: Path) -> None:
    _video(media / "scan.avi", 10)
    (media / "bad.mp4").write_bytes(b"\x00" * 64)
    found = load_frames(media, size=SIZE, max_frames=4)
    video = next(c for c in found.clips if c.kind == "video")
    assert video.clip_id == "scan.avi" and video.available == 10 and len(video.frames) == 4
    centres = [int(f[0, SIZE // 2, SIZE // 2]) for f in video.frames]
    assert centres == sorted(centres) and centres[0] < 10 and centres[-1] > 160  # 0 .. 180
    assert {s.path for s in found.skipped} == {"bad.mp4", "broken.png", "escape"}


def test_videos_without_a_decoder_name_the_package(
    media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (media / "scan.mp4").write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` now raises ImportError
    with pytest.raises(VideoDecoderMissingError, match="opencv-python-headless"):
        load_frames(media, size=SIZE)
    (media / "scan.mp4").unlink()
    assert load_frames(media, size=SIZE).summary()["clips"] == 3  # images need no decoder


def test_root_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        load_frames(tmp_path / "missing")
    with pytest.raises(ValueError, match="max_frames"):
        load_frames(tmp_path, max_frames=0)
