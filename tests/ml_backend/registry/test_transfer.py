"""Export a model version from one home and import it into another (two real SQLite homes).

The import side is fed damaged and hostile archives: each is refused with nothing registered
and nothing written outside the staging folder.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bench.support.factories import MANIFEST, register_opaque_detector
from core.errors import ExitCode
from core.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory
from db.models import ModelPromotion, ModelVersion
from ml_backend.detector.frcnn import WEIGHTS
from ml_backend.registry import DamagedVersionError, ModelRegistry
from ml_backend.registry.transfer import (
    ArchiveRefusedError,
    ExportTargetExistsError,
    ImportLimits,
    VersionConflictError,
    export_version,
    import_version,
)


@pytest.fixture
def source(settings: Settings, sessions: sessionmaker[Session]) -> ModelRegistry:
    return ModelRegistry.for_settings(settings, sessions)


@pytest.fixture
def version(settings: Settings, sessions: sessionmaker[Session]) -> str:
    return register_opaque_detector(settings, sessions)


@pytest.fixture
def target(tmp_path: Path) -> Iterator[ModelRegistry]:
    """A second home with its own database: where the model moves to."""
    other = Settings(_env_file=None, home=tmp_path / "home2")
    other.home.mkdir(parents=True, exist_ok=True)
    engine = make_engine(other.db_url)
    migrate.upgrade(engine)
    yield ModelRegistry.for_settings(other, make_session_factory(engine))
    engine.dispose()


@pytest.fixture
def archive(source: ModelRegistry, version: str, tmp_path: Path) -> Path:
    dest = tmp_path / "out" / "model.tar.gz"
    dest.parent.mkdir()
    export_version(source, version, dest)
    return dest


def _rows(registry: ModelRegistry) -> tuple[int, int]:
    with registry._sessions() as session:
        versions = session.scalar(select(func.count()).select_from(ModelVersion))
        moves = session.scalar(select(func.count()).select_from(ModelPromotion))
    return int(versions or 0), int(moves or 0)


def _nothing_registered(registry: ModelRegistry) -> None:
    assert _rows(registry) == (0, 0)
    staged = list(registry.staging_root.iterdir()) if registry.staging_root.exists() else []
    assert staged == []
    left = [p.name for p in registry.root.iterdir()] if registry.root.exists() else []
    assert left in ([], [".staging"])


def _unpack(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(manifest, {member name: bytes}) of an exported archive."""
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    return json.loads(members.pop("manifest.json")), members


def _pack(
    path: Path,
    manifest: dict[str, Any],
    files: dict[str, bytes],
    extra: list[tarfile.TarInfo] | None = None,
) -> Path:
    """An archive as an attacker or a broken tool might write it."""
    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        body = json.dumps(manifest).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for member in extra or []:
            tar.addfile(member)
    return path


def _flip_last(data: bytes) -> bytes:
    """The same bytes but the last, which changes whatever it was."""
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def _entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_round_trip_into_a_second_home(
    source: ModelRegistry, version: str, archive: Path, target: ModelRegistry
) -> None:
    out = import_version(target, archive)

    assert (out.id, out.status, out.active, out.parent) == (version, "imported", False, None)
    there, here = target.get(version), source.get(version)
    assert there.path == target.root / version and there.path.is_dir()
    assert (there.kind, there.label_space, there.config) == (
        here.kind,
        here.label_space,
        here.config,
    )
    assert (there.created_at, there.metrics, there.data_manifest_sha256) == (
        here.created_at,
        here.metrics,
        MANIFEST,
    )
    assert there.checksums == here.checksums and WEIGHTS in (there.checksums or {})
    assert (there.path / WEIGHTS).read_bytes() == (here.path / WEIGHTS).read_bytes()
    assert target.verify(version) == []
    assert target.active("detector") is None  # imported, not served
    assert out.files == len(here.checksums or {})
    assert stat.S_IMODE((there.path / WEIGHTS).stat().st_mode) & 0o222 == 0  # sealed (as root too)


def test_export_is_deterministic_atomic_and_does_not_overwrite(
    source: ModelRegistry, version: str, archive: Path
) -> None:
    first = archive.read_bytes()
    with pytest.raises(ExportTargetExistsError, match="--force"):
        export_version(source, version, archive)
    again = export_version(source, version, archive, force=True)
    assert archive.read_bytes() == first  # same version, same bytes
    assert again.sha256 == hashlib.sha256(first).hexdigest()
    assert sorted(p.name for p in archive.parent.iterdir()) == ["model.tar.gz"]  # no temp left
    manifest, members = _unpack(archive)
    assert manifest["version"]["id"] == version and manifest["version"]["kind"] == "detector"
    assert manifest["version"]["label_space"] == list(source.get(version).label_space)
    assert {f"model/{rel}" for rel in manifest["files"]} == set(members)
    for rel, entry in manifest["files"].items():
        assert entry == _entry(members[f"model/{rel}"])


def test_a_damaged_version_is_not_exported(
    source: ModelRegistry, version: str, tmp_path: Path
) -> None:
    weights = source.path_of(version) / WEIGHTS
    weights.chmod(0o644)
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(DamagedVersionError) as refused:
        export_version(source, version, tmp_path / "x.tar.gz")
    assert refused.value.exit_code == ExitCode.MODEL_DAMAGED
    assert list(tmp_path.glob("*x.tar.gz*")) == []


def test_a_flipped_byte_is_refused_and_nothing_registered(
    archive: Path, target: ModelRegistry
) -> None:
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveRefusedError) as refused:
        import_version(target, archive)
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    _nothing_registered(target)


def test_a_changed_file_with_its_old_checksum_is_refused(
    archive: Path, target: ModelRegistry, tmp_path: Path
) -> None:
    manifest, members = _unpack(archive)
    members[f"model/{WEIGHTS}"] = _flip_last(members[f"model/{WEIGHTS}"])
    bad = _pack(tmp_path / "bad.tar.gz", manifest, members)
    with pytest.raises(ArchiveRefusedError, match="does not match its checksum"):
        import_version(target, bad)
    _nothing_registered(target)


def test_a_manifest_that_disagrees_with_version_json_is_refused(
    archive: Path, target: ModelRegistry, tmp_path: Path
) -> None:
    manifest, members = _unpack(archive)
    manifest["version"]["label_space"] = ["benign", "malignant"]
    bad = _pack(tmp_path / "bad.tar.gz", manifest, members)
    with pytest.raises(ArchiveRefusedError, match="disagrees"):
        import_version(target, bad)
    _nothing_registered(target)


def _link(name: str, kind: bytes, to: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, to
    return info


@pytest.mark.parametrize(
    ("listed", "member", "why"),
    [
        ("../evil", None, "unsafe path"),
        ("/tmp/evil", None, "unsafe path"),
        ("a/./b", None, "unsafe path"),
        (None, "model/../../evil", "unsafe path"),
        (None, "../evil", "unexpected member"),
        (None, _link("model/evil", tarfile.SYMTYPE, "/etc/passwd"), "is a link"),
        (None, _link("model/evil", tarfile.LNKTYPE, "manifest.json"), "is a link"),
        (None, _link("model/evil", tarfile.CHRTYPE), "is a device"),
        (None, _link("model/evil", tarfile.DIRTYPE), "folder entry"),
        (None, "model/unlisted.bin", "not listed"),
    ],
    ids=[
        "listed-dotdot",
        "listed-absolute",
        "listed-dot",
        "member-dotdot",
        "outside-model",
        "symlink",
        "hardlink",
        "device",
        "folder",
        "unlisted",
    ],
)
def test_hostile_members_are_refused(
    archive: Path,
    target: ModelRegistry,
    tmp_path: Path,
    listed: str | None,
    member: str | tarfile.TarInfo | None,
    why: str,
) -> None:
    manifest, members = _unpack(archive)
    extra: list[tarfile.TarInfo] = []
    if listed is not None:
        manifest["files"][listed] = _entry(b"evil")
    if isinstance(member, str):
        members[member] = b"evil"
    elif member is not None:
        extra.append(member)
    bad = _pack(tmp_path / "bad.tar.gz", manifest, members, extra)
    with pytest.raises(ArchiveRefusedError, match=why):
        import_version(target, bad)
    _nothing_registered(target)
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_sizes_beyond_the_limits_are_refused(archive: Path, target: ModelRegistry) -> None:
    with pytest.raises(ArchiveRefusedError, match="larger than"):
        import_version(target, archive, limits=ImportLimits(max_file_bytes=1024))
    with pytest.raises(ArchiveRefusedError, match="more than 1 files"):
        import_version(target, archive, limits=ImportLimits(max_files=1))
    _nothing_registered(target)


def test_a_decompression_bomb_stops_at_the_cap(
    archive: Path, target: ModelRegistry, tmp_path: Path
) -> None:
    """Every member is legal, but the stream goes on far past what its manifest allows."""
    manifest, _ = _unpack(archive)
    total = sum(entry["size"] for entry in manifest["files"].values())
    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip.compress(gzip.decompress(archive.read_bytes()) + b"\0" * (8 << 20)))
    limits = ImportLimits(max_total_bytes=total, max_file_bytes=total, max_manifest_bytes=1 << 16)
    with pytest.raises(ArchiveRefusedError, match="more than the size limit"):
        import_version(target, bomb, limits=limits)
    _nothing_registered(target)
    assert import_version(target, archive, limits=limits).status == "imported"  # cap is not tight


def test_not_an_archive_is_refused(target: ModelRegistry, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ArchiveRefusedError, match="not a gzipped archive"):
        import_version(target, junk)
    _nothing_registered(target)


def test_importing_the_same_archive_again_changes_nothing(
    archive: Path, target: ModelRegistry, version: str
) -> None:
    assert import_version(target, archive).status == "imported"
    target.promote(version, actor="test")
    before = _rows(target), sorted(p.name for p in target.root.iterdir())

    again = import_version(target, archive)

    assert (again.id, again.status, again.active) == (version, "already_present", True)
    assert (_rows(target), sorted(p.name for p in target.root.iterdir())) == before
    assert list(target.staging_root.iterdir()) == []


def test_a_different_model_under_a_registered_id_is_refused(
    archive: Path, target: ModelRegistry, version: str, tmp_path: Path
) -> None:
    import_version(target, archive)
    sealed = (target.path_of(version) / WEIGHTS).read_bytes()
    manifest, members = _unpack(archive)
    other = _flip_last(members[f"model/{WEIGHTS}"])  # self-consistent, but not the same
    members[f"model/{WEIGHTS}"] = other
    manifest["files"][WEIGHTS] = _entry(other)
    impostor = _pack(tmp_path / "impostor.tar.gz", manifest, members)

    with pytest.raises(VersionConflictError, match=f"different model version {version}"):
        import_version(target, impostor)
    assert (target.path_of(version) / WEIGHTS).read_bytes() == sealed
    assert target.verify(version) == [] and _rows(target) == (1, 0)


def _child(source: ModelRegistry, parent: str, tmp_path: Path) -> tuple[str, Path]:
    """A fine-tuned version of `parent` (tiny files), exported."""
    with source.staging("detector") as staged:
        (staged / "weights.bin").write_bytes(b"child")
        child = source.register(
            staged,
            kind="detector",
            label_space=source.get(parent).label_space,
            config={"tiny": True},
            data_manifest_sha256=MANIFEST,
            parent_id=parent,
        ).id
    export_version(source, child, tmp_path / "child.tar.gz")
    return child, tmp_path / "child.tar.gz"


def test_the_parent_link_is_kept_when_the_parent_came_first(
    source: ModelRegistry, version: str, archive: Path, target: ModelRegistry, tmp_path: Path
) -> None:
    child, child_file = _child(source, version, tmp_path)
    import_version(target, archive)
    out = import_version(target, child_file)
    assert (out.parent, out.parent_linked) == (version, True)
    assert target.get(child).parent_id == version


def test_a_child_without_its_parent_is_imported_unlinked(
    source: ModelRegistry, version: str, target: ModelRegistry, tmp_path: Path
) -> None:
    child, child_file = _child(source, version, tmp_path)
    out = import_version(target, child_file)
    assert (out.status, out.parent, out.parent_linked) == ("imported", version, False)
    assert target.get(child).parent_id is None  # the row cannot point at a missing version
    sealed = json.loads((target.path_of(child) / "version.json").read_text())
    assert sealed["parent_id"] == version  # the sealed file still names it


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "../detector-20260101-000000-abcd"),
        ("kind", "../detector"),
        ("parent_id", "x/detector-20260101-000000-abcd"),
        ("data_manifest_sha256", "0" * 64 + "/.."),
    ],
)
def test_unsafe_metadata_is_refused(
    archive: Path, target: ModelRegistry, tmp_path: Path, field: str, value: str
) -> None:
    manifest, members = _unpack(archive)
    manifest["version"][field] = value
    bad = _pack(tmp_path / "bad.tar.gz", manifest, members)
    with pytest.raises(ArchiveRefusedError, match=r"manifest\.json is not valid"):
        import_version(target, bad)
    _nothing_registered(target)
