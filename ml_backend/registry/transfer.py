"""Carry a model version to another home: one checksummed archive out, a distrustful import in.

The archive is a gzipped tar: `manifest.json` first (the version's metadata as its sealed
`version.json` states it, plus sha256 and size per file), then `model/<file>` for every file the
registry sealed. Export refuses a damaged version; the bytes written are hashed as they are read,
so a file that changes under the export is caught too.

Import treats the file as hostile: members are read one by one from a size-bounded stream (no
`extractall`), only plain files under `model/` with clean relative names are accepted, sizes are
capped, and every file is hashed into a staging folder before anything is registered. A version
keeps its id across homes, so importing the same archive twice changes nothing, and a different
archive claiming a registered id is refused. Nothing is promoted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Annotated, Final, Literal, cast

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    model_validator,
)

from core.errors import BadInputError
from core.results import VersionMetrics
from ml_backend.registry.integrity import file_checksums
from ml_backend.registry.registry import (
    KIND_RE,
    SHA256_RE,
    VERSION_FILE,
    VERSION_ID_RE,
    DamagedVersionError,
    ModelRegistry,
    RegistryError,
    UnknownVersionError,
    VersionInfo,
    VersionRecord,
)

FORMAT: Final = "birads-labeler-model"
MANIFEST = "manifest.json"
MODEL_DIR = "model"
_CHUNK = 1 << 20
_MAX_DEPTH = 16
_MAX_PART_BYTES = 255
# pydantic's `pattern` searches; these must match the whole string
_ID = f"^(?:{VERSION_ID_RE.pattern})$"
_SHA256 = f"^(?:{SHA256_RE.pattern})$"
_KIND = f"^(?:{KIND_RE.pattern})$"


class ArchiveRefusedError(RegistryError):
    """The file is not an intact model archive (damaged, tampered with, or unsafe); exit 2."""

    def __init__(self, why: str) -> None:
        super().__init__(f"model archive refused: {why}; nothing was imported")


class VersionConflictError(RegistryError):
    """A different model version with the same id is already registered here; exit 2."""


class ExportTargetExistsError(BadInputError):
    """The export file exists and --force was not given; exit 2."""


@dataclass(frozen=True)
class ImportLimits:
    """What an archive may hold; beyond it the import stops before writing more."""

    max_files: int = 1000
    max_file_bytes: int = 8 * 2**30
    max_total_bytes: int = 16 * 2**30
    max_manifest_bytes: int = 4 * 2**20


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VersionMeta(_Frozen):
    """A version's metadata, as its sealed version.json states it."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # keys a later release may add

    id: str = Field(pattern=_ID)
    kind: str = Field(pattern=_KIND)
    created_at: AwareDatetime
    parent_id: str | None = Field(pattern=_ID)
    label_space: tuple[Annotated[str, Field(min_length=1)], ...] = Field(min_length=1)
    config: dict[str, JsonValue]
    data_manifest_sha256: str = Field(pattern=_SHA256)
    package_version: str = Field(max_length=40)
    metrics: VersionMetrics | None

    @model_validator(mode="after")
    def _consistent(self) -> VersionMeta:
        found = VERSION_ID_RE.fullmatch(self.id)
        if found is None or found.group(1) != self.kind:
            raise ValueError(f"id {self.id!r} is not a {self.kind} version id")
        if len(set(self.label_space)) != len(self.label_space):
            raise ValueError("label_space has duplicates")
        return self


class ManifestFile(_Frozen):
    sha256: str = Field(pattern=_SHA256)
    size: int = Field(ge=0)


class ArchiveManifest(_Frozen):
    format: Literal["birads-labeler-model"] = FORMAT
    format_version: Literal[1] = 1
    version: VersionMeta
    files: dict[str, ManifestFile]  # relative POSIX path in the version folder -> entry


@dataclass(frozen=True)
class ExportResult:
    id: str
    kind: str
    file: str
    files: int
    bytes: int  # the version's files, uncompressed
    sha256: str  # of the archive file itself, to compare after copying it


@dataclass(frozen=True)
class ImportResult:
    id: str
    kind: str
    status: Literal["imported", "already_present"]
    files: int
    bytes: int
    parent: str | None  # as the archive names it
    parent_linked: bool  # False: the parent is not registered in this home
    active: bool
    package_version: str  # the labeler version that trained it


# --- export ----------------------------------------------------------------------------------


def export_version(
    registry: ModelRegistry, version_id: str, dest: Path, *, force: bool = False
) -> ExportResult:
    """Write one version into `dest` atomically (temp file + rename); refuse a damaged one."""
    dest = Path(dest).expanduser().absolute()
    if dest.is_dir():
        raise ExportTargetExistsError(f"{dest} is a folder: name the archive file to write")
    if not dest.parent.is_dir():
        raise BadInputError(f"no folder {dest.parent} to write the archive into")
    if dest.exists() and not force:
        raise ExportTargetExistsError(f"{dest} exists: pass --force to overwrite it")
    info = registry.get(version_id)
    folder = registry.intact_path(version_id)  # DamagedVersionError (exit 6) when damaged
    expected = info.checksums if info.checksums is not None else file_checksums(folder)
    meta = _sealed_meta(folder, info)
    files = {
        rel: ManifestFile(sha256=sha, size=(folder / rel).stat().st_size)
        for rel, sha in expected.items()
    }
    manifest = ArchiveManifest(version=meta, files=files)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            _write_archive(raw, folder, manifest, mtime=int(meta.created_at.timestamp()))
            raw.flush()
            os.fsync(raw.fileno())
        tmp.chmod(0o644)
        _place(tmp, dest, force=force)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with dest.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    return ExportResult(
        id=info.id,
        kind=info.kind,
        file=str(dest),
        files=len(files),
        bytes=sum(f.size for f in files.values()),
        sha256=digest,
    )


def _sealed_meta(folder: Path, info: VersionInfo) -> VersionMeta:
    """version.json (checksummed with the rest), which must name the same version as its row."""
    try:
        meta = VersionMeta.model_validate_json((folder / VERSION_FILE).read_bytes())
    except ValidationError as exc:
        raise RegistryError(
            f"model version {info.id}: its {VERSION_FILE} cannot be exported ({_first(exc)})"
        ) from None
    row = (info.id, info.kind, info.parent_id, info.label_space, info.data_manifest_sha256)
    sealed = (meta.id, meta.kind, meta.parent_id, meta.label_space, meta.data_manifest_sha256)
    if row != sealed:
        raise RegistryError(f"model version {info.id}: its {VERSION_FILE} disagrees with its row")
    return meta


class _HashingReader:
    """Hashes what tarfile reads, so the bytes archived are the bytes checked."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self.digest.update(data)
        return data


def _write_archive(raw: IO[bytes], folder: Path, manifest: ArchiveManifest, *, mtime: int) -> None:
    """Deterministic bytes: fixed mtimes, owners and modes, gzip without a time stamp."""
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        body = (manifest.model_dump_json(indent=2) + "\n").encode()
        tar.addfile(_member(MANIFEST, len(body), mtime), io.BytesIO(body))
        for rel, entry in sorted(manifest.files.items()):
            with (folder / rel).open("rb") as fh:
                reader = _HashingReader(fh)
                tar.addfile(
                    _member(f"{MODEL_DIR}/{rel}", entry.size, mtime), cast(IO[bytes], reader)
                )
            if reader.digest.hexdigest() != entry.sha256:
                raise DamagedVersionError(
                    manifest.version.id, [f"{rel} has changed (sha256 differs)"]
                )


def _member(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.size, member.mtime, member.mode = size, mtime, 0o444
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member


def _place(tmp: Path, dest: Path, *, force: bool) -> None:
    """Rename into place; without `force` never over a file that appeared meanwhile."""
    if force:
        os.replace(tmp, dest)
    else:
        try:
            os.link(tmp, dest)  # fails if dest exists: no window between check and write
        except FileExistsError:
            raise ExportTargetExistsError(f"{dest} exists: pass --force to overwrite it") from None
        except OSError:  # a file system without hard links
            if dest.exists():
                raise ExportTargetExistsError(
                    f"{dest} exists: pass --force to overwrite it"
                ) from None
            os.replace(tmp, dest)
        tmp.unlink(missing_ok=True)
    fd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- import ----------------------------------------------------------------------------------


def import_version(
    registry: ModelRegistry, archive: Path, *, limits: ImportLimits | None = None
) -> ImportResult:
    """Verify every file of `archive`, then register it under its own id (never promoted)."""
    limits = limits or ImportLimits()
    archive = Path(archive).expanduser()
    if not archive.is_file():
        raise BadInputError(f"no model archive at {archive}")
    with _open_gzip(archive) as gz:
        bounded = _BoundedReader(cast(IO[bytes], gz), _stream_cap(limits))
        try:
            with tarfile.open(fileobj=cast(IO[bytes], bounded), mode="r|") as tar:
                members = iter(tar)
                manifest = _read_manifest(tar, next(members, None), limits)
                with registry.staging(manifest.version.kind) as staged:
                    try:
                        _extract(tar, members, manifest, staged, limits)
                        while bounded.read(_CHUNK):  # to the end: gzip checks its CRC there
                            pass
                        _check_sealed_meta(staged, manifest.version)
                        return _register(registry, staged, manifest)
                    finally:
                        shutil.rmtree(staged, ignore_errors=True)  # registered: moved away
        except (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError) as exc:
            raise ArchiveRefusedError(f"it is damaged ({_reason(exc)})") from None


def _open_gzip(archive: Path) -> gzip.GzipFile:
    with archive.open("rb") as fh:
        magic = fh.read(2)
    if magic != b"\x1f\x8b":
        raise ArchiveRefusedError("not a gzipped archive made by `labeler models export`")
    return gzip.GzipFile(archive, mode="rb")


def _stream_cap(limits: ImportLimits) -> int:
    """The most uncompressed bytes a legal archive can hold (headers and padding included)."""
    per_member = 3 * tarfile.BLOCKSIZE + 2048  # header, pax header, padding
    return (
        limits.max_total_bytes
        + limits.max_manifest_bytes
        + (limits.max_files + 2) * per_member
        + 2 * tarfile.RECORDSIZE
    )


class _BoundedReader:
    """Stops a decompression bomb: reading past `cap` bytes refuses the archive."""

    def __init__(self, fh: IO[bytes], cap: int) -> None:
        self._fh = fh
        self._left = cap

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size if size >= 0 else self._left + 1)
        self._left -= len(data)
        if self._left < 0:
            raise ArchiveRefusedError("it unpacks to more than the size limit")
        return data


def _read_manifest(
    tar: tarfile.TarFile, member: tarfile.TarInfo | None, limits: ImportLimits
) -> ArchiveManifest:
    if member is None or member.name != MANIFEST:
        raise ArchiveRefusedError(f"its first member is not {MANIFEST}")
    _check_type(member)
    if member.size > limits.max_manifest_bytes:
        raise ArchiveRefusedError(f"{MANIFEST} is larger than {limits.max_manifest_bytes} bytes")
    fh = tar.extractfile(member)
    assert fh is not None  # a regular file
    try:
        manifest = ArchiveManifest.model_validate_json(fh.read())
    except ValidationError as exc:
        raise ArchiveRefusedError(f"{MANIFEST} is not valid ({_first(exc)})") from None
    files = manifest.files
    if len(files) > limits.max_files:
        raise ArchiveRefusedError(f"it holds more than {limits.max_files} files")
    for rel, entry in files.items():
        _safe_rel(rel)
        if entry.size > limits.max_file_bytes:
            raise ArchiveRefusedError(f"{rel!r} is larger than {limits.max_file_bytes} bytes")
    if sum(e.size for e in files.values()) > limits.max_total_bytes:
        raise ArchiveRefusedError(f"its files add up to more than {limits.max_total_bytes} bytes")
    if VERSION_FILE not in files:
        raise ArchiveRefusedError(f"it has no {VERSION_FILE}")
    return manifest


def _safe_rel(rel: str) -> PurePosixPath:
    """A relative path that stays inside the folder: no absolute, `..`, `.`, `\\` or NUL."""
    path = PurePosixPath(rel)
    parts = rel.split("/")
    if (
        not rel
        or path.is_absolute()
        or "\\" in rel
        or "\0" in rel
        or any(p in ("", ".", "..") for p in parts)
        or len(parts) > _MAX_DEPTH
        or any(len(p.encode()) > _MAX_PART_BYTES for p in parts)
    ):
        raise ArchiveRefusedError(f"unsafe path {rel!r}")
    return path


def _check_type(member: tarfile.TarInfo) -> None:
    """Only plain files: a link, device, fifo or folder entry could write outside staging."""
    if member.isreg():
        return
    if member.issym() or member.islnk():
        what = "a link"
    elif member.isdev():
        what = "a device"
    elif member.isdir():
        what = "a folder entry"
    else:
        what = "not a plain file"
    raise ArchiveRefusedError(f"member {member.name!r} is {what}")


def _extract(
    tar: tarfile.TarFile,
    members: Iterator[tarfile.TarInfo],
    manifest: ArchiveManifest,
    staged: Path,
    limits: ImportLimits,
) -> None:
    """Copy each listed file into `staged`, hashing as it goes; anything else refuses."""
    seen: set[str] = set()
    prefix = f"{MODEL_DIR}/"
    for member in members:
        if not member.name.startswith(prefix):
            raise ArchiveRefusedError(f"unexpected member {member.name!r}")
        rel = member.name[len(prefix) :]
        _safe_rel(rel)
        _check_type(member)
        entry = manifest.files.get(rel)
        if entry is None or rel in seen:
            raise ArchiveRefusedError(f"member {member.name!r} is not listed once in {MANIFEST}")
        if member.size != entry.size or member.size > limits.max_file_bytes:
            raise ArchiveRefusedError(f"{rel!r} does not have the size its manifest states")
        seen.add(rel)
        source = tar.extractfile(member)
        assert source is not None  # a regular file
        target = staged / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        digest = hashlib.sha256()
        with os.fdopen(os.open(target, flags, 0o644), "wb") as out:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != entry.sha256:
            raise ArchiveRefusedError(f"{rel!r} does not match its checksum")
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise ArchiveRefusedError(f"{len(missing)} listed file(s) are missing, e.g. {missing[0]!r}")


def _check_sealed_meta(staged: Path, meta: VersionMeta) -> None:
    """The manifest's metadata must be what the (checksummed) version.json says."""
    try:
        sealed = VersionMeta.model_validate_json((staged / VERSION_FILE).read_bytes())
    except ValidationError as exc:
        raise ArchiveRefusedError(f"its {VERSION_FILE} is not valid ({_first(exc)})") from None
    if sealed != meta:
        raise ArchiveRefusedError(f"{MANIFEST} disagrees with the version's {VERSION_FILE}")


def _register(registry: ModelRegistry, staged: Path, manifest: ArchiveManifest) -> ImportResult:
    """Register under the archive's id; the same version already here is a no-op."""
    meta = manifest.version
    checksums = {rel: f.sha256 for rel, f in manifest.files.items()}
    status: Literal["imported", "already_present"] = "already_present"
    info = _existing(registry, meta, checksums)
    if info is None:
        parent_here = meta.parent_id is not None and _registered(registry, meta.parent_id)
        try:
            record = VersionRecord(
                kind=meta.kind,
                created_at=meta.created_at,
                parent_id=meta.parent_id if parent_here else None,
                label_space=meta.label_space,
                config=dict(meta.config),
                data_manifest_sha256=meta.data_manifest_sha256,
                package_version=meta.package_version,
                metrics=meta.metrics,
            )
            info = registry.register_as(staged, version_id=meta.id, record=record)
            status = "imported"
        except RegistryError:
            info = _existing(registry, meta, checksums)  # a concurrent import of the same file
            if info is None:
                raise
    return ImportResult(
        id=info.id,
        kind=info.kind,
        status=status,
        files=len(checksums),
        bytes=sum(f.size for f in manifest.files.values()),
        parent=meta.parent_id,
        parent_linked=info.parent_id is not None,
        active=info.active,
        package_version=meta.package_version,
    )


def _existing(
    registry: ModelRegistry, meta: VersionMeta, checksums: dict[str, str]
) -> VersionInfo | None:
    """The registered version with this id if it is this very model; refused if it is another."""
    try:
        existing = registry.get(meta.id)
    except UnknownVersionError:
        return None
    have = existing.checksums
    if have is None:  # registered before checksums were stored
        have = file_checksums(existing.path) if existing.path.is_dir() else {}
    if have != checksums or existing.kind != meta.kind:
        raise VersionConflictError(
            f"a different model version {meta.id} is already registered here; nothing was imported"
        )
    return existing


def _registered(registry: ModelRegistry, version_id: str) -> bool:
    try:
        registry.get(version_id)
    except UnknownVersionError:
        return False
    return True


def _first(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"]) or "document"
    return f"{where}: {err['msg']}"


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
