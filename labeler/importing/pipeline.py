"""The import job: guard -> hash -> skip known -> convert (worker processes) -> rows, in chunks.

Each chunk is its own transaction, so an interrupted import keeps what it finished and the next
run skips it by sha256. PNGs are written before their rows and named by sha256, so a PNG without
a row is simply rewritten next time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from db import queries
from db.models import Split
from db.settings import Settings
from labeler.importing.convert import Converted, ConvertTask, convert, looks_like_dicom
from labeler.importing.datasets import adapter_for
from labeler.importing.items import ImportItem, ImportProblem, fold_for_key
from labeler.importing.paths import OutsideDataRootError, display_path, ensure_inside
from labeler.importing.summary import ImportSummary

log = logging.getLogger(__name__)
_POOL_MIN_TASKS = 16  # below this, worker start-up costs more than it saves


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...


class _NoProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


@dataclass(frozen=True)
class _Staged:
    item: ImportItem
    sha256: str
    task: ConvertTask


def run_import(
    path: Path,
    *,
    dataset: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    progress: Progress | None = None,
) -> ImportSummary:
    """Import a folder or dataset. Raises OutsideDataRootError/DatasetLayoutError for the whole
    batch; per-file problems go into the summary and the batch goes on."""
    started = time.perf_counter()
    root = ensure_inside(path, settings.data_root)
    adapter = adapter_for(dataset)
    summary = ImportSummary(dataset=dataset)
    entries = list(adapter(root))
    progress = progress or _NoProgress()
    progress.start(len(entries))
    staged: list[_Staged] = []
    with sessions() as session:
        for entry in _hash_and_dedup(entries, settings, summary, session, progress):
            staged.append(entry)
        session.commit()
    for chunk in _chunks(_converted(staged, settings), settings.import_commit_every):
        with sessions.begin() as session:
            for entry, result in chunk:
                _record(session, entry, result, settings, summary)
        progress.advance(len(chunk))
    with sessions.begin() as session:
        summary.seconds = time.perf_counter() - started
        queries.record_event(
            session,
            actor="labeler import",
            action="import",
            subject=f"dataset:{dataset}",
            detail=summary.audit_detail(),
        )
    for problem in summary.errors:
        log.warning("import error: %s", problem)
    return summary


def _hash_and_dedup(
    entries: list[ImportItem | ImportProblem],
    settings: Settings,
    summary: ImportSummary,
    session: Session,
    progress: Progress,
) -> Iterator[_Staged]:
    """Yield files that need converting; account for problems and already-present files here."""
    hashed: list[tuple[ImportItem, str, bool]] = []
    for entry in entries:
        problem = entry if isinstance(entry, ImportProblem) else None
        if problem is None and isinstance(entry, ImportItem):
            result = _hash(entry, settings)
            if isinstance(result, ImportProblem):
                problem = result
            else:
                hashed.append((entry, *result))
        if problem is not None:
            summary.errors.append(problem)
            progress.advance()
    known = queries.existing_shas(session, shas=(sha for _, sha, _ in hashed))
    salt = settings.salt()
    in_batch: set[str] = set()
    for item, sha, is_dicom in hashed:
        where = display_path(item.path, settings.data_root)
        if sha in in_batch:
            summary.warnings.append(
                ImportProblem(where, "same content as another file in this batch")
            )
            progress.advance()
            continue
        in_batch.add(sha)
        if sha in known:
            _record_present(session, item, sha, summary)
            progress.advance()
            continue
        dest = settings.images_dir / sha[:2] / f"{sha}.png"
        task = ConvertTask(item.path, dest, where, is_dicom, salt, item.expected_size)
        yield _Staged(item, sha, task)


def _hash(item: ImportItem, settings: Settings) -> tuple[str, bool] | ImportProblem:
    where = display_path(item.path, settings.data_root)
    try:
        resolved = ensure_inside(item.path, settings.data_root)
        with resolved.open("rb") as fh:
            head = fh.read(132)
            fh.seek(0)
            sha = hashlib.file_digest(fh, "sha256").hexdigest()  # streamed: cine files are large
    except OutsideDataRootError:
        return ImportProblem(where, "refused: the file lies outside LABELER_DATA_ROOT")
    except FileNotFoundError:
        return ImportProblem(where, "file not found")
    except OSError as exc:
        return ImportProblem(where, f"cannot read file ({exc.strerror or type(exc).__name__})")
    if item.reference is not None and item.expected_size is not None:
        bad = _box_outside(item)
        if bad:
            return ImportProblem(where, bad)
    return sha, looks_like_dicom(resolved, head)


def _box_outside(item: ImportItem) -> str | None:
    assert item.reference is not None and item.expected_size is not None
    width, height = item.expected_size
    for box in item.reference.boxes:
        x0, y0, x1, y1 = box.xyxy
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            return f"box {box.xyxy} lies outside the {width}x{height} image"
    return None


def _converted(
    staged: list[_Staged], settings: Settings
) -> Iterator[tuple[_Staged, Converted | ImportProblem]]:
    tasks = [s.task for s in staged]
    if settings.import_workers == 1 or len(tasks) < _POOL_MIN_TASKS:
        yield from zip(staged, map(convert, tasks), strict=True)
        return
    # spawn, not fork: the parent holds a database engine and may hold threads.
    with ProcessPoolExecutor(settings.import_workers, mp_context=get_context("spawn")) as pool:
        yield from zip(staged, pool.map(convert, tasks, chunksize=8), strict=True)


def _chunks(
    pairs: Iterable[tuple[_Staged, Converted | ImportProblem]], size: int
) -> Iterator[list[tuple[_Staged, Converted | ImportProblem]]]:
    chunk: list[tuple[_Staged, Converted | ImportProblem]] = []
    for pair in pairs:
        chunk.append(pair)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _record(
    session: Session,
    staged: _Staged,
    result: Converted | ImportProblem,
    settings: Settings,
    summary: ImportSummary,
) -> None:
    if isinstance(result, ImportProblem):
        summary.errors.append(result)
        return
    item, sha = staged.item, staged.sha256
    patient_key = item.patient_key or result.patient_key or f"img-{sha[:24]}"
    fold = item.fold or fold_for_key(patient_key, settings.n_folds)
    new = queries.NewImage(
        sha256=sha,
        patient_key=patient_key,
        patient_source=item.dataset
        if item.patient_key
        else ("dicom" if result.patient_key else "image"),
        lesion_key=item.lesion_key,
        view=item.view or result.view,
        width=result.width,
        height=result.height,
        mode=result.mode,
        dataset=item.dataset,
        source_id=item.source_id,
        fold=fold,
        split=Split(settings.split_for_fold(fold)),
        png_path=str(staged.task.dest.relative_to(settings.home)),
        modality=result.modality,
        device=result.device,
        burned_in_annotation=result.burned_in_annotation,
    )
    image = queries.add_image(session, new=new)
    summary.added += 1
    summary.splits[new.split.value] += 1
    _count_labels(session, item, image.id, summary)
    summary.warnings.extend(ImportProblem(staged.task.where, w) for w in result.warnings)
    if staged.task.is_dicom:
        summary.dicom_deidentified += 1
        burned = result.burned_in_annotation
        summary.burned_in["yes" if burned else "no" if burned is False else "unknown"] += 1
        if burned:
            summary.warnings.append(
                ImportProblem(
                    staged.task.where,
                    "BurnedInAnnotation=YES: text in the pixels may identify the patient",
                )
            )


def _record_present(session: Session, item: ImportItem, sha: str, summary: ImportSummary) -> None:
    image = queries.get_image(session, sha256=sha)
    summary.already_present += 1
    if image is not None:
        summary.splits[image.split.value] += 1
        _count_labels(session, item, image.id, summary)


def _count_labels(
    session: Session, item: ImportItem, image_id: int, summary: ImportSummary
) -> None:
    summary.images += 1
    ref = item.reference
    if ref is None:
        summary.unlabeled += 1
        return
    summary.birads[ref.birads] += 1
    if ref.pathology is not None:
        summary.pathology[ref.pathology] += 1
    reference = queries.NewReference(
        source=item.dataset,
        birads=ref.birads,
        pathology=ref.pathology,
        histology=ref.histology,
        boxes=ref.boxes,
    )
    if queries.add_reference_label(session, image_id=image_id, reference=reference) is not None:
        summary.labels_added += 1
