"""Immutable model versions on disk plus rows in the database; `active` is a pointer per kind.

A version is written into a staging folder, described by a `version.json`, fsynced, made
read-only and renamed into `root/<id>` in one step; only then is its row inserted. Readers list
rows, never folders, so a half-written version is never visible. Promote and rollback move the
pointer, append to `model_promotions` and write an audit event in one transaction.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.metadata
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from core.errors import BadInputError, ModelDamagedError
from core.results import VERSION_METRICS, VersionMetrics
from core.settings import Settings
from db.engine import session_scope
from db.models import ModelPromotion, ModelVersion
from db.queries import events as event_queries
from db.queries import versions as version_queries
from ml_backend.registry.integrity import IntegrityCache, file_checksums

STAGING = ".staging"
VERSION_FILE = "version.json"
KIND_RE = re.compile(r"[a-z0-9][a-z0-9_]{0,39}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
VERSION_ID_RE = re.compile(r"([a-z0-9][a-z0-9_]{0,39})-\d{8}-\d{6}-[0-9a-f]{4}")  # group 1: kind
_ID_ATTEMPTS = 20
_INTEGRITY = IntegrityCache()  # one per process: a warm server re-hashes only changed files


@dataclass(frozen=True)
class VersionRecord:
    """What a version's row and its version.json say besides its id and files."""

    kind: str
    created_at: datetime
    parent_id: str | None
    label_space: Sequence[str]
    config: dict[str, Any]
    data_manifest_sha256: str
    package_version: str
    metrics: VersionMetrics | None


class RegistryError(BadInputError):
    """A registry operation was refused; the message says why (exit code 2)."""


class UnknownVersionError(RegistryError):
    """No model version with that id is registered."""

    def __init__(self, version_id: str) -> None:
        super().__init__(f"no model version {version_id!r} is registered")
        self.version_id = version_id


class NothingToRollBackError(RegistryError):
    """The pointer has no earlier version to go back to."""


class DamagedVersionError(ModelDamagedError):
    """A version's files are missing or differ from the checksums taken when it was sealed.

    Not a `RegistryError`: nothing was refused, the files changed under us (exit code 6)."""

    def __init__(self, version_id: str, found: Sequence[str]) -> None:
        super().__init__(
            f"model version {version_id} is damaged ({'; '.join(found)}): "
            "`labeler models verify` lists what is wrong; restore its folder from a backup or "
            "`labeler models rollback` to the previous version"
        )
        self.version_id = version_id
        self.problems = tuple(found)


@dataclass(frozen=True)
class VersionInfo:
    id: str
    kind: str
    path: Path
    parent_id: str | None
    label_space: tuple[str, ...]
    config: dict[str, Any]
    data_manifest_sha256: str
    package_version: str
    metrics: VersionMetrics | None  # None: registered without
    status: str
    created_at: datetime
    active: bool
    checksums: dict[str, str] | None = None


def installed_package_version() -> str:
    """The labeler's own version, recorded in every model version."""
    try:
        return importlib.metadata.version("birads-labeler")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _check_kind(kind: str) -> str:
    if not KIND_RE.fullmatch(kind):
        raise ValueError(f"model kind must match {KIND_RE.pattern}, got {kind!r}")
    return kind


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal(folder: Path) -> None:
    """Flush every file to disk and make the tree read-only (folders stay traversable)."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            if Path(dirpath, name).is_symlink():
                link = Path(dirpath, name).relative_to(folder)
                raise RegistryError(f"a model version cannot hold a symlink: {link}")
        for name in filenames:
            file = Path(dirpath, name)
            _fsync(file)
            file.chmod(0o444)
        Path(dirpath).chmod(0o755)
        _fsync(Path(dirpath))


def _newest_mtime(folder: Path) -> float:
    newest = folder.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in [*dirnames, *filenames]:
            with contextlib.suppress(FileNotFoundError):
                newest = max(newest, Path(dirpath, name).lstat().st_mtime)
    return newest


def _discard(path: Path) -> None:
    """Best-effort removal on a failure path (files are read-only, their folders are not)."""
    shutil.rmtree(path, ignore_errors=True)


def _pointer_stack(history: Sequence[ModelPromotion]) -> list[str]:
    """Replay the history: a promote pushes its version, a rollback pops the top one."""
    stack: list[str] = []
    for move in history:
        if move.action == "promote":
            stack.append(move.model_version_id)
        elif move.action == "rollback" and stack:
            stack.pop()
    return stack


class ModelRegistry:
    """Model versions under `root` (normally `settings.home / "models"`), rows in `sessions`."""

    def __init__(self, root: Path, sessions: sessionmaker[Session]) -> None:
        self.root = Path(root).expanduser().resolve()
        self._sessions = sessions

    @classmethod
    def for_settings(cls, settings: Settings, sessions: sessionmaker[Session]) -> ModelRegistry:
        return cls(settings.home / "models", sessions)

    @property
    def staging_root(self) -> Path:
        return self.root / STAGING

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def staging(self, kind: str) -> Iterator[Path]:
        """A fresh folder to write a version into; removed if the block raises.

        Pass it to `register` (inside or after the block). A folder that never gets registered
        (its process was killed) is removed by `cleanup_staging`, which runs here first: every
        writer passes through this door, so leftovers older than an hour never pile up.
        """
        _check_kind(kind)
        self.cleanup_staging()
        self.staging_root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.staging_root))
        try:
            yield folder
        except BaseException:
            if folder.exists():
                _discard(folder)
            raise

    def register(
        self,
        staged: Path,
        *,
        kind: str,
        label_space: Sequence[str],
        config: dict[str, Any],
        data_manifest_sha256: str,
        metrics: VersionMetrics | None = None,
        parent_id: str | None = None,
        package_version: str | None = None,
    ) -> VersionInfo:
        """Freeze a staged folder into a new version; the active pointer does not move."""
        _check_kind(kind)
        staged = Path(staged).resolve()
        if staged.parent != self.staging_root or not staged.is_dir():
            raise RegistryError(f"not a staging folder of this registry: {staged}")
        labels = list(label_space)
        if not labels or not all(isinstance(x, str) and x for x in labels):
            raise ValueError("label_space must be a non-empty sequence of non-empty strings")
        if len(set(labels)) != len(labels):
            raise ValueError("label_space has duplicates")
        if not SHA256_RE.fullmatch(data_manifest_sha256):
            raise ValueError("data_manifest_sha256 must be 64 lowercase hex digits")
        if parent_id is not None:
            self.get(parent_id)
        record = VersionRecord(
            kind=kind,
            created_at=datetime.now(UTC),
            parent_id=parent_id,
            label_space=labels,
            config=config,
            data_manifest_sha256=data_manifest_sha256,
            package_version=package_version or installed_package_version(),
            metrics=metrics,
        )
        meta: dict[str, Any] = {
            "kind": kind,
            "created_at": record.created_at.isoformat(),
            "parent_id": parent_id,
            "label_space": labels,
            "config": config,
            "data_manifest_sha256": data_manifest_sha256,
            "package_version": record.package_version,
            "metrics": (
                VERSION_METRICS.dump_python(metrics, mode="json") if metrics is not None else None
            ),
        }
        json.dumps(meta)  # refuse values JSON cannot hold before anything moves

        self.root.mkdir(parents=True, exist_ok=True)
        final = self._move_into_place(staged, kind=kind, created=record.created_at, meta=meta)
        return self._insert(final, record)

    def register_as(self, staged: Path, *, version_id: str, record: VersionRecord) -> VersionInfo:
        """Freeze a staged folder that already holds its version.json, under a given id.

        For a version carried from another home (`transfer.import_version`): id, creation time
        and files stay as sealed there, so both homes name the same model the same way. The
        caller checks version.json; the pointer does not move.
        """
        kind = record.kind
        _check_kind(kind)
        found = VERSION_ID_RE.fullmatch(version_id)
        if found is None or found.group(1) != kind:
            raise RegistryError(f"not a {kind} version id: {version_id!r}")
        staged = Path(staged).resolve()
        if staged.parent != self.staging_root or not (staged / VERSION_FILE).is_file():
            raise RegistryError(f"not a staged version of this registry: {staged}")
        if record.parent_id is not None:
            self.get(record.parent_id)
        final = self.root / version_id
        _seal(staged)
        try:
            os.mkdir(final)  # claims the name: rename would replace an empty folder silently
        except FileExistsError:
            raise RegistryError(
                f"models/{version_id} already exists on disk without being registered: move it "
                "aside and import again"
            ) from None
        try:
            os.rename(staged, final)
        except BaseException:
            with contextlib.suppress(OSError):
                final.rmdir()
            raise
        _fsync(self.root)
        _fsync(self.staging_root)
        return self._insert(final, record)

    def _insert(self, final: Path, record: VersionRecord) -> VersionInfo:
        """Insert the row of a sealed folder now in place (removed again if the insert fails)."""
        version_id = final.name
        try:
            with session_scope(self._sessions) as session:
                version_queries.add_model_version(
                    session,
                    version_id=version_id,
                    kind=record.kind,
                    path=f"{self.root.name}/{version_id}",
                    parent_id=record.parent_id,
                    label_space=list(record.label_space),
                    config=record.config,
                    data_manifest_sha256=record.data_manifest_sha256,
                    package_version=record.package_version,
                    metrics=record.metrics,
                    created_at=record.created_at,
                    checksums=file_checksums(final),
                )
        except BaseException:
            if not self._row_exists(version_id):
                _discard(final)
            raise
        return self.get(version_id)

    def _move_into_place(
        self, staged: Path, *, kind: str, created: datetime, meta: dict[str, Any]
    ) -> Path:
        """Write version.json, seal, and rename to a fresh id (retrying on an id clash)."""
        meta_file = staged / VERSION_FILE
        for _ in range(_ID_ATTEMPTS):
            version_id = f"{kind}-{created:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
            final = self.root / version_id
            if final.exists():
                continue
            if meta_file.exists():
                meta_file.chmod(0o644)
            with meta_file.open("w", encoding="utf-8") as fh:
                json.dump({"id": version_id, **meta}, fh, indent=2, sort_keys=True)
                fh.write("\n")
            _seal(staged)
            try:
                os.rename(staged, final)  # atomic; fails if another version took the name
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise
            _fsync(self.root)
            _fsync(self.staging_root)
            return final
        raise RegistryError("could not find a free version id")

    def _row_exists(self, version_id: str) -> bool:
        """After a failed insert: is the row there anyway? On doubt say yes (keep the folder)."""
        try:
            with self._sessions() as session:
                return version_queries.get_model_version(session, version_id=version_id) is not None
        except Exception:
            return True

    # --- reading ---------------------------------------------------------------------------

    def path_of(self, version_id: str) -> Path:
        return self.get(version_id).path

    def get(self, version_id: str) -> VersionInfo:
        with self._sessions() as session:
            row = version_queries.get_model_version(session, version_id=version_id)
            if row is None:
                raise UnknownVersionError(version_id)
            active = version_queries.active_model_id(session, kind=row.kind)
            return self._info(row, active=active == row.id)

    def list_versions(self, kind: str | None = None) -> list[VersionInfo]:
        """Registered versions, newest first."""
        with self._sessions() as session:
            rows = version_queries.model_versions(session, kind=kind)
            active = set(version_queries.active_model_ids(session).values())
            return [self._info(row, active=row.id in active) for row in rows]

    def active(self, kind: str) -> VersionInfo | None:
        with self._sessions() as session:
            version_id = version_queries.active_model_id(session, kind=kind)
            if version_id is None:
                return None
            row = version_queries.get_model_version(session, version_id=version_id)
            if row is None:  # the foreign key makes this impossible
                raise UnknownVersionError(version_id)
            return self._info(row, active=True)

    def verify(self, version_id: str) -> list[str]:
        """What is wrong with a version's files (empty: intact); re-hashes only changed files."""
        info = self.get(version_id)
        return _INTEGRITY.problems(info.path, info.checksums)

    def intact_path(self, version_id: str) -> Path:
        """The folder of a version whose files are as sealed; DamagedVersionError otherwise."""
        info = self.get(version_id)
        found = _INTEGRITY.problems(info.path, info.checksums)
        if found:
            raise DamagedVersionError(version_id, found)
        return info.path

    def history(self, kind: str) -> list[tuple[str, str, str | None]]:
        """(action, version id, previous version id) for each pointer move, oldest first."""
        with self._sessions() as session:
            return [
                (m.action, m.model_version_id, m.previous_version_id)
                for m in version_queries.promotion_history(session, kind=kind)
            ]

    # --- moving the pointer ----------------------------------------------------------------

    def promote(self, version_id: str, *, actor: str = "cli", reason: str = "") -> VersionInfo:
        """Make a version the active one of its kind (a no-op if it already is)."""
        with session_scope(self._sessions) as session:
            row = version_queries.get_model_version(session, version_id=version_id)
            if row is None:
                raise UnknownVersionError(version_id)
            if not (self._path(row) / VERSION_FILE).is_file():
                raise RegistryError(f"model version {version_id!r} has no folder on disk")
            current = version_queries.active_model_id(session, kind=row.kind)
            if current != version_id:
                self._move(
                    session,
                    kind=row.kind,
                    to=version_id,
                    current=current,
                    action="promote",
                    actor=actor,
                    reason=reason,
                )
            return self._info(row, active=True)

    def rollback(self, kind: str, *, actor: str = "cli", reason: str = "") -> VersionInfo:
        """Move the pointer back to the version that was active before the current one."""
        with session_scope(self._sessions) as session:
            current = version_queries.active_model_id(session, kind=kind)
            if current is None:
                raise NothingToRollBackError(f"no {kind!r} model is active")
            stack = _pointer_stack(version_queries.promotion_history(session, kind=kind))
            if not stack or stack[-1] != current:
                raise RegistryError(
                    f"active {kind!r} model {current!r} does not match its promotion history"
                )
            if len(stack) < 2:
                raise NothingToRollBackError(
                    f"no earlier {kind!r} model to roll back to from {current!r}"
                )
            target = stack[-2]
            self._move(
                session,
                kind=kind,
                to=target,
                current=current,
                action="rollback",
                actor=actor,
                reason=reason,
            )
            row = version_queries.get_model_version(session, version_id=target)
            assert row is not None  # the foreign key guarantees it
            return self._info(row, active=True)

    @staticmethod
    def _move(
        session: Session,
        *,
        kind: str,
        to: str,
        current: str | None,
        action: str,
        actor: str,
        reason: str,
    ) -> None:
        version_queries.set_active_model(session, kind=kind, version_id=to)
        version_queries.add_promotion(
            session,
            kind=kind,
            version_id=to,
            previous_id=current,
            action=action,
            actor=actor,
            reason=reason,
        )
        event_queries.record_event(
            session,
            actor=actor,
            action=action,
            subject=f"model:{kind}",
            detail={"kind": kind, "version_id": to, "previous_version_id": current},
        )

    # --- housekeeping ----------------------------------------------------------------------

    def cleanup_staging(self, max_age_s: float = 3600) -> list[Path]:
        """Remove what a killed process left behind, untouched for `max_age_s` seconds.

        That is staging folders, and version folders whose row was never inserted (killed
        between rename and insert). Returns the removed paths.
        """
        cutoff = time.time() - max_age_s
        removed: list[Path] = []
        if self.staging_root.is_dir():
            for folder in sorted(self.staging_root.iterdir()):
                if _newest_mtime(folder) < cutoff:
                    if folder.is_dir() and not folder.is_symlink():
                        shutil.rmtree(folder)
                    else:
                        folder.unlink()
                    removed.append(folder)
        if self.root.is_dir():
            candidates = [
                p
                for p in sorted(self.root.iterdir())
                if p.name != STAGING and p.is_dir() and (p / VERSION_FILE).is_file()
            ]
            with self._sessions() as session:
                orphans = [
                    p
                    for p in candidates
                    if version_queries.get_model_version(session, version_id=p.name) is None
                ]
            for folder in orphans:
                if _newest_mtime(folder) < cutoff:
                    shutil.rmtree(folder)
                    removed.append(folder)
        return removed

    # --- helpers ---------------------------------------------------------------------------

    def _path(self, row: ModelVersion) -> Path:
        return self.root.parent / row.path

    def _info(self, row: ModelVersion, *, active: bool) -> VersionInfo:
        created = row.created_at
        if created.tzinfo is None:  # SQLite hands back naive datetimes; they are UTC
            created = created.replace(tzinfo=UTC)
        return VersionInfo(
            id=row.id,
            kind=row.kind,
            path=self._path(row),
            parent_id=row.parent_id,
            label_space=tuple(row.label_space),
            config=dict(row.config),
            data_manifest_sha256=row.data_manifest_sha256,
            package_version=row.package_version,
            metrics=row.metrics,
            status=row.status,
            created_at=created,
            active=active,
            checksums=dict(row.checksums) if row.checksums is not None else None,
        )
