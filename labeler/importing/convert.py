"""One file -> one de-identified 8-bit PNG. Runs in worker processes, so it touches no database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from labeler.importing.dicom import read_dicom
from labeler.importing.items import ImportProblem
from labeler.importing.rasters import UnreadableImageError, read_raster, write_png


@dataclass(frozen=True)
class ConvertTask:
    path: Path
    dest: Path
    where: str
    is_dicom: bool
    salt: bytes
    expected_size: tuple[int, int] | None = None


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


def looks_like_dicom(path: Path, head: bytes) -> bool:
    return path.suffix.lower() in (".dcm", ".dicom") or head[128:132] == b"DICM"


def convert(task: ConvertTask) -> Converted | ImportProblem:
    try:
        if task.is_dicom:
            dicom = read_dicom(task.path, salt=task.salt)
            pixels, extra = dicom.pixels, dicom
        else:
            pixels, extra = read_raster(task.path), None
        height, width = pixels.shape[:2]
        if task.expected_size is not None and (width, height) != task.expected_size:
            w, h = task.expected_size
            return ImportProblem(
                task.where, f"image is {width}x{height} but its labels were drawn on {w}x{h}"
            )
        mode = write_png(pixels, task.dest)
    except UnreadableImageError as exc:
        return ImportProblem(task.where, str(exc))
    except OSError as exc:
        return ImportProblem(task.where, f"cannot write PNG ({exc.strerror or type(exc).__name__})")
    if extra is None:
        return Converted(width=width, height=height, mode=mode, modality="US")
    return Converted(
        width=width,
        height=height,
        mode=mode,
        patient_key=extra.patient_key,
        view=extra.view,
        modality=extra.modality,
        device=extra.device,
        burned_in_annotation=extra.burned_in_annotation,
        warnings=tuple(extra.warnings),
    )
