"""The import job: lock -> guard -> hash -> skip known -> convert (worker processes) -> rows.

Each chunk is its own transaction, so an interrupted import keeps what it finished and the next
run skips it by sha256. PNGs are written before their rows and named by sha256, so a PNG without
a row is simply rewritten next time. One import runs at a time per LABELER_HOME (a second one
waits); the rows are written with INSERT ... ON CONFLICT DO NOTHING, so even a writer outside
the lock cannot make an import fail on a duplicate.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.models import Split
from db.queries import events as event_queries
from db.queries import images as image_queries
from labeler.importing.convert import Converted, ConvertTask, convert, looks_like_dicom
from labeler.importing.datasets import adapter_for
from labeler.importing.exclusive import import_lock, sweep_temporaries
from labeler.importing.items import ImportItem, ImportProblem, fold_for_key
from labeler.importing.ocr import find_engine
from labeler.importing.paths import (
    MissingPathError,
    RefusedPathError,
    ensure_inside,
    might_be_dicom,
    source_label,
)
from labeler.importing.summary import ImportSummary

log = logging.getLogger(__name__)
_POOL_MIN_TASKS = 16  # below this, worker start-up costs more than it saves
BURNED_IN = "BurnedInAnnotation=YES: text in the pixels may identify the patient"


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


@dataclass(frozen=True)
class _Options:
    settings: Settings
    ocr_engine: str | None
    redact_text: bool
    split: Split | None  # None: by patient fold; set: every new image goes to this split


def run_import(
    path: Path,
    *,
    dataset: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    progress: Progress | None = None,
    redact_text: bool = False,
    split: Split | None = None,
    say: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import a folder or dataset. Raises RefusedPathError/DatasetLayoutError for the whole
    batch, DiskFullError when the disk fills; per-file problems go into the summary and the
    batch goes on. `say` hears (once) that another import holds the lock and this one waits.

    `split` puts every new image in that split instead of its fold's (an external dataset
    imported with Split.TEST is never trained on). An image already stored keeps its split:
    the summary counts those whose split differs from the one asked for."""
    root = ensure_inside(path, settings.data_root, home=settings.home)
    if not root.exists():
        raise MissingPathError()
    adapter = adapter_for(dataset)
    with import_lock(settings.home, on_wait=say):
        started = time.perf_counter()
        sweep_temporaries(settings.images_dir)
        options = _Options(settings, find_engine(settings.ocr), redact_text, split)
        summary = _run(root, dataset, adapter(root), options, sessions, progress or _NoProgress())
        with sessions.begin() as session:
            summary.seconds = time.perf_counter() - started
            event_queries.record_event(
                session,
                actor="labeler import",
                action="import",
                subject=f"dataset:{dataset}",
                detail=summary.audit_detail(),
            )
    for problem in summary.errors:
        log.warning("import error: %s", problem)
    return summary


def _run(
    root: Path,
    dataset: str,
    found: Iterable[ImportItem | ImportProblem],
    options: _Options,
    sessions: sessionmaker[Session],
    progress: Progress,
) -> ImportSummary:
    settings = options.settings
    summary = ImportSummary(dataset=dataset, split_requested=options.split)
    summary.pixel_text.engine = options.ocr_engine
    entries = _outside_home(list(found), settings, summary)
    progress.start(len(entries))
    with sessions() as session:
        staged = list(_hash_and_dedup(entries, options, summary, session, progress))
        session.commit()
    for chunk in _chunks(_converted(staged, settings), settings.import_commit_every):
        with sessions.begin() as session:
            for entry, result in chunk:
                _record(session, entry, result, options, summary)
        progress.advance(len(chunk))
    return summary


def _outside_home(
    entries: list[ImportItem | ImportProblem], settings: Settings, summary: ImportSummary
) -> list[ImportItem | ImportProblem]:
    """Drop files under LABELER_HOME (a data root often contains it) with one warning."""
    home = settings.home
    kept = [e for e in entries if not (isinstance(e, ImportItem) and e.path.is_relative_to(home))]
    if len(kept) < len(entries):
        summary.warnings.append(
            ImportProblem(
                "LABELER_HOME",
                f"{len(entries) - len(kept)} files under it skipped (never imported)",
            )
        )
    return kept


def _hash_and_dedup(
    entries: list[ImportItem | ImportProblem],
    options: _Options,
    summary: ImportSummary,
    session: Session,
    progress: Progress,
) -> Iterator[_Staged]:
    """Yield files that need converting; account for problems and already-present files here."""
    settings = options.settings
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
    known = image_queries.existing_shas(session, shas=(sha for _, sha, _ in hashed))
    salt = settings.salt()
    in_batch: set[str] = set()
    for item, sha, is_dicom in hashed:
        hide = is_dicom or might_be_dicom(item.path)  # a broken PACS export is named like one
        where = source_label(item.path, settings.data_root, sha256=sha, is_dicom=hide)
        if sha in in_batch:
            summary.warnings.append(
                ImportProblem(where, "same content as another file in this batch")
            )
            progress.advance()
            continue
        in_batch.add(sha)
        if sha in known:
            _record_present(session, item, sha, summary, options.split)
            progress.advance()
            continue
        dest = settings.images_dir / sha[:2] / f"{sha}.png"
        task = ConvertTask(
            item.path,
            dest,
            where,
            is_dicom,
            salt,
            item.expected_size,
            max_pixels=settings.max_image_pixels,
            ocr_engine=options.ocr_engine,
            redact_text=options.redact_text,
        )
        yield _Staged(item, sha, task)


def _hash(item: ImportItem, settings: Settings) -> tuple[str, bool] | ImportProblem:
    root = settings.data_root
    where = source_label(item.path, root, sha256=None, is_dicom=might_be_dicom(item.path))
    try:
        resolved = ensure_inside(item.path, root, home=settings.home, what="the file")
        with resolved.open("rb") as fh:
            head = fh.read(132)
            fh.seek(0)
            sha = hashlib.file_digest(fh, "sha256").hexdigest()  # streamed: cine files are large
    except RefusedPathError as exc:
        return ImportProblem(where, f"refused: {exc}")
    except FileNotFoundError:
        return ImportProblem(where, "file not found")
    except OSError as exc:
        return ImportProblem(where, f"cannot read file ({exc.strerror or type(exc).__name__})")
    is_dicom = looks_like_dicom(resolved, head)
    if item.reference is not None and item.expected_size is not None:
        bad = _box_outside(item)
        if bad:
            hide = is_dicom or might_be_dicom(item.path)
            return ImportProblem(source_label(item.path, root, sha256=sha, is_dicom=hide), bad)
    return sha, is_dicom


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
    pool = ProcessPoolExecutor(settings.import_workers, mp_context=get_context("spawn"))
    try:
        yield from zip(staged, pool.map(convert, tasks, chunksize=8), strict=True)
    finally:  # a full disk (or Ctrl-C) stops the batch: the queued files are not converted
        pool.shutdown(wait=True, cancel_futures=True)


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
    options: _Options,
    summary: ImportSummary,
) -> None:
    settings = options.settings
    if isinstance(result, ImportProblem):
        summary.errors.append(result)
        return
    item, sha, where = staged.item, staged.sha256, staged.task.where
    patient_key = item.patient_key or result.patient_key or f"img-{sha[:24]}"
    fold = item.fold or fold_for_key(patient_key, settings.n_folds)
    new = image_queries.NewImage(
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
        split=options.split or Split(settings.split_for_fold(fold)),
        png_path=str(staged.task.dest.relative_to(settings.home)),
        modality=result.modality,
        device=result.device,
        burned_in_annotation=result.burned_in_annotation,
        held_reason=BURNED_IN if result.burned_in_annotation else None,
        pixel_text=result.pixel_text,
    )
    try:
        image, added = image_queries.put_image(session, new=new)
    except ValueError as exc:  # a lesion of another patient, a source id taken by other pixels
        summary.errors.append(ImportProblem(where, str(exc)))
        return
    if not added:  # another writer stored the same pixels a moment ago
        _record_present(session, item, sha, summary, options.split)
        return
    summary.added += 1
    summary.splits[new.split.value] += 1
    if options.split is not None and image_queries.in_other_splits(
        session, patient_id=image.patient_id, split=options.split
    ):
        summary.patient_in_other_split += 1
    _count_labels(session, item, image.id, summary)
    summary.warnings.extend(ImportProblem(where, w) for w in result.warnings)
    summary.pixel_text.add(where, image.id, result.pixel_text)
    if staged.task.is_dicom:
        summary.dicom_deidentified += 1
        burned = result.burned_in_annotation
        summary.burned_in["yes" if burned else "no" if burned is False else "unknown"] += 1
    if new.held_reason is not None:
        summary.held.append(image.id)
        summary.warnings.append(
            ImportProblem(where, f"{BURNED_IN}; held back from Label Studio (image {image.id})")
        )


def _record_present(
    session: Session, item: ImportItem, sha: str, summary: ImportSummary, split: Split | None
) -> None:
    """A stored image keeps its split, whatever --split asks: moving a trained-on image into
    the test split would make the test set lie, so the summary says so instead."""
    image = image_queries.get_image(session, sha256=sha)
    summary.already_present += 1
    if image is not None:
        summary.splits[image.split.value] += 1
        if split is not None and image.split is not split:
            summary.kept_split[image.split.value] += 1
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
    reference = image_queries.NewReference(
        source=item.dataset,
        birads=ref.birads,
        pathology=ref.pathology,
        histology=ref.histology,
        boxes=ref.boxes,
    )
    stored = image_queries.add_reference_label(session, image_id=image_id, reference=reference)
    if stored is not None:
        summary.labels_added += 1
