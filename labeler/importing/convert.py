"""One file -> one de-identified 8-bit PNG. Runs in worker processes, so it touches no database.

Order matters: the pixel cap is checked from the header before decoding, and the OCR pass (and a
redaction) runs on the decoded pixels before the PNG is written, so a redacted PNG never exists
unredacted on disk.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

from core.errors import DiskFullError
from core.settings import Settings
from db.schemas import PixelText
from labeler.importing.dicom import read_dicom
from labeler.importing.items import ImportProblem
from labeler.importing.ocr import OcrFailedError, check_text
from labeler.importing.rasters import UnreadableImageError, read_raster, write_png

DEFAULT_MAX_PIXELS: int = Settings.model_fields["max_image_pixels"].default


@dataclass(frozen=True)
class ConvertTask:
    path: Path
    dest: Path
    where: str
    is_dicom: bool
    salt: bytes
    expected_size: tuple[int, int] | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    ocr_engine: str | None = None  # None: text in the pixels is not checked
    redact_text: bool = False


@dataclass(frozen=True)
class Converted:
    width: int
    height: int
    mode: str
    patient_key: str | None = None
    view: str | None = None
    modality: str | None = None
    device: str | None = None
    burned_in_annotation: bool | None = None
    warnings: tuple[str, ...] = ()
    pixel_text: PixelText | None = None


def looks_like_dicom(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in (".dcm", ".dicom") or head[128:132] == b"DICM"


def convert(task: ConvertTask) -> Converted | ImportProblem:
    """Raises DiskFullError (the whole batch stops: every later file would fail the same way)."""
    notes: list[str] = []
    try:
        if task.is_dicom:
            dicom = read_dicom(task.path, salt=task.salt, max_pixels=task.max_pixels)
            pixels, extra = dicom.pixels, dicom
        else:
            pixels, extra = read_raster(task.path, max_pixels=task.max_pixels), None
        height, width = pixels.shape[:2]
        if task.expected_size is not None and (width, height) != task.expected_size:
            w, h = task.expected_size
            return ImportProblem(
                task.where, f"image is {width}x{height} but its labels were drawn on {w}x{h}"
            )
        try:
            pixels, text = check_text(pixels, engine=task.ocr_engine, redact=task.redact_text)
        except OcrFailedError as exc:
            text = PixelText(checked=False, engine=task.ocr_engine)
            notes.append(f"text in the pixels not checked: the OCR engine failed ({exc})")
        mode = write_png(pixels, task.dest)
    except UnreadableImageError as exc:
        return ImportProblem(task.where, str(exc))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(
                "no space left on the disk of LABELER_HOME; the import stopped"
            ) from None
        return ImportProblem(task.where, f"cannot write PNG ({exc.strerror or type(exc).__name__})")
    if extra is None:
        return Converted(
            width=width,
            height=height,
            mode=mode,
            modality="US",
            warnings=tuple(notes),
            pixel_text=text,
        )
    return Converted(
        width=width,
        height=height,
        mode=mode,
        patient_key=extra.patient_key,
        view=extra.view,
        modality=extra.modality,
        device=extra.device,
        burned_in_annotation=extra.burned_in_annotation,
        warnings=tuple(extra.warnings) + tuple(notes),
        pixel_text=text,
    )
