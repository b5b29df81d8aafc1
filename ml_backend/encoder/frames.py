"""Unlabeled clips for self-supervised pre-training: videos, frame folders and loose images.

Under `root`, every video file is one clip, the images directly inside one sub-folder are one
clip (a frame folder, at any depth), and every image directly in `root` is a clip of its own.
Frames of one clip are positives for each other; the clip index is the label of the hard
triplet loss. A clip keeps at most `max_frames` frames, spread evenly over it.

Frames are decoded once, zero-padded to a square (ultrasound surroundings are black, and
squashing would change a lesion's aspect ratio, a BI-RADS feature), resized to `size` and kept
as uint8; grey frames keep one channel (a third of the memory) and become 3 channels on access.
A file that cannot be decoded is skipped with a warning and counted, never fatal. Paths that
resolve outside `root` (symlinks) are skipped the same way. Videos are decoded with OpenCV.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.errors import BadInputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov"})
_GREY_MODES = frozenset({"1", "L", "LA", "P", "I", "I;16", "F"})
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

ClipKind = Literal["video", "frames", "image"]


class VideoDecoderMissingError(BadInputError):
    """Videos were found but no decoder is installed."""


@dataclass(frozen=True)
class Skipped:
    path: str  # relative to the root
    reason: str


@dataclass(frozen=True)
class Clip:
    clip_id: str  # path relative to the root
    kind: ClipKind
    available: int  # frames in the source, before the per-clip cap
    frames: list[torch.Tensor]  # uint8 C x size x size, C = 1 (grey) or 3


@dataclass
class FrameSet:
    root: Path
    size: int
    clips: list[Clip] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def frame(self, clip: int, index: int) -> torch.Tensor:
        """Float 3 x size x size in [0, 1]."""
        pixels = self.clips[clip].frames[index]
        return pixels.expand(3, -1, -1).float() / 255

    def frame_refs(self) -> list[tuple[int, int]]:
        """(clip, frame) for every kept frame, clip by clip."""
        return [(c, i) for c, clip in enumerate(self.clips) for i in range(len(clip.frames))]

    def group_ids(self) -> list[int]:
        """The clip index of every frame, in frame_refs() order: the triplet loss's labels."""
        return [c for c, _ in self.frame_refs()]

    def summary(self) -> dict[str, Any]:
        kinds = {k: sum(c.kind == k for c in self.clips) for k in ("video", "frames", "image")}
        return {
            "clips": len(self.clips),
            "frames": sum(len(c.frames) for c in self.clips),
            "by_kind": kinds,
            "skipped": len(self.skipped),
        }


def natural_key(name: str) -> list[int | str]:
    """frame_2 sorts before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def even_indices(n: int, cap: int) -> list[int]:
    """At most `cap` indices spread evenly over range(n), first and last included."""
    if n <= cap:
        return list(range(n))
    if cap == 1:
        return [n // 2]
    return sorted({round(float(x)) for x in np.linspace(0, n - 1, cap)})


def square_resize(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 C x H x W -> uint8 C x size x size: centred zero padding to a square, then resize."""
    _, h, w = pixels.shape
    side = max(h, w)
    left, top = (side - w) // 2, (side - h) // 2
    padded = F.pad(pixels.float(), (left, side - w - left, top, side - h - top))
    resized = F.interpolate(padded[None], size=(size, size), mode="bilinear", antialias=True)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def _from_array(arr: np.ndarray[Any, Any], size: int) -> torch.Tensor:
    """H x W or H x W x 3 uint8 -> stored frame; colour frames whose channels agree become grey."""
    if arr.ndim == 3 and bool((arr == arr[:, :, :1]).all()):
        arr = arr[:, :, 0]
    chw = torch.from_numpy(np.array(arr, copy=True))  # PIL arrays are read-only
    chw = chw[None] if chw.ndim == 2 else chw.permute(2, 0, 1)
    return square_resize(chw, size)


def read_image(path: Path, size: int) -> torch.Tensor:
    with Image.open(path) as image:
        mode = "L" if image.mode in _GREY_MODES else "RGB"
        arr = np.asarray(image.convert(mode))
    return _from_array(arr, size)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise VideoDecoderMissingError(
            "found video files but no video decoder is installed: "
            "pip install opencv-python-headless (or extract the frames into folders)"
        ) from None
    return cv2


def read_video(path: Path, size: int, cap: int) -> tuple[list[torch.Tensor], int]:
    """Evenly sampled frames and the video's frame count; decoded in one sequential pass."""
    cv2 = _cv2()
    n = _count_frames(cv2, path)
    wanted = set(even_indices(n, cap))
    capture = cv2.VideoCapture(str(path))
    frames: list[torch.Tensor] = []
    try:
        for index in range(n):
            if not capture.grab():
                break  # truncated: keep what was read
            if index in wanted:
                ok, bgr = capture.retrieve()
                if ok:
                    frames.append(_from_array(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
    finally:
        capture.release()
    if not frames:
        raise ValueError("no decodable frame")
    return frames, n


def _count_frames(cv2: Any, path: Path) -> int:
    """The container's frame count, or a counting pass when it has none (some streams)."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise ValueError("not a readable video")
        n = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while capture.grab():
                n += 1
    finally:
        capture.release()
    if n == 0:
        raise ValueError("no frames")
    return n


def _scan(
    directory: Path, root: Path, skipped: list[Skipped], seen: set[Path]
) -> Iterator[tuple[Path, list[Path], list[Path]]]:
    """(folder, its images, its videos) for `directory` and every folder below it.

    Hidden entries are ignored; entries that resolve outside `root` are skipped; a folder or
    file reached twice through symlinks is read once.
    """
    images: list[Path] = []
    videos: list[Path] = []
    folders: list[Path] = []
    for entry in sorted(os.scandir(directory), key=lambda e: natural_key(e.name)):
        path = Path(entry.path)
        real = path.resolve()
        if entry.name.startswith(".") or real in seen:
            continue
        if not real.is_relative_to(root):
            _skip(skipped, root, path, "resolves outside the root (symlink); not read")
            continue
        seen.add(real)
        suffix = path.suffix.lower()
        if real.is_dir():
            folders.append(path)
        elif suffix in IMAGE_SUFFIXES:
            images.append(path)
        elif suffix in VIDEO_SUFFIXES:
            videos.append(path)
    yield directory, images, videos
    for folder in folders:
        yield from _scan(folder, root, skipped, seen)


def _skip(skipped: list[Skipped], root: Path, path: Path, reason: str) -> None:
    rel = path.relative_to(root).as_posix()
    log.warning("skipped %s: %s", rel, reason)
    skipped.append(Skipped(rel, reason))


def _decode(path: Path, size: int, cap: int) -> tuple[list[torch.Tensor], int]:
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return read_video(path, size, cap)
    return [read_image(path, size)], 1


def _try_decode(found: FrameSet, path: Path, cap: int) -> tuple[list[torch.Tensor], int] | None:
    try:
        return _decode(path, found.size, cap)
    except VideoDecoderMissingError:
        raise
    except Exception as exc:  # decoders raise many types on malformed files; none is fatal
        _skip(found.skipped, found.root, path, f"cannot be decoded ({type(exc).__name__}: {exc})")
        return None


def _add_clip(found: FrameSet, path: Path, kind: ClipKind, cap: int) -> None:
    decoded = _try_decode(found, path, cap)
    if decoded is not None:
        clip_id = path.relative_to(found.root).as_posix()
        found.clips.append(Clip(clip_id, kind, decoded[1], decoded[0]))


def _add_frame_folder(found: FrameSet, folder: Path, images: list[Path], cap: int) -> None:
    frames: list[torch.Tensor] = []
    for index in even_indices(len(images), cap):
        decoded = _try_decode(found, images[index], cap)
        if decoded is not None:
            frames.extend(decoded[0])
    if frames:
        clip_id = folder.relative_to(found.root).as_posix()
        found.clips.append(Clip(clip_id, "frames", len(images), frames))


def load_images(root: Path, relative: Sequence[str], *, size: int = 224) -> FrameSet:
    """Each listed image under `root` a clip of its own: a site's stored images for SimCLR
    (two views of one image are the positive pair). An unreadable file is skipped, as above."""
    found = FrameSet(root.expanduser().resolve(), size)
    for rel in relative:
        path = (found.root / rel).resolve()
        if not path.is_relative_to(found.root):
            found.skipped.append(Skipped(rel, "outside the folder"))
            continue
        _add_clip(found, path, "image", 1)
    return found


def load_frames(root: Path, *, size: int = 224, max_frames: int = 16) -> FrameSet:
    """Every clip under `root` (see the module docstring), in natural path order."""
    if max_frames < 1:
        raise ValueError("max_frames must be at least 1")
    root = root.expanduser().resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    found = FrameSet(root, size)
    listing = list(_scan(root, root, found.skipped, {root}))
    if any(videos for _, _, videos in listing):
        _cv2()  # fail before decoding anything when videos cannot be read
    for folder, images, videos in listing:
        for video in videos:
            _add_clip(found, video, "video", max_frames)
        if folder == root:
            for image in images:
                _add_clip(found, image, "image", max_frames)
        elif images:
            _add_frame_folder(found, folder, images, max_frames)
    return found
