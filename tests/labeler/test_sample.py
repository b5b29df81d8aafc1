"""The demo's sample ships in the package and is imported in place or as one copy under the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from labeler.sample import (
    COPY_FOLDER,
    SAMPLE_ROOT,
    SAMPLES,
    SampleMissingError,
    bundled,
    importable,
)


def test_every_sample_ships_with_its_licence() -> None:
    for name in SAMPLES:
        assert (bundled(name) / "LICENSE.txt").is_file() or (
            bundled(name) / "ATTRIBUTION.md"
        ).is_file()
    with pytest.raises(SampleMissingError, match="reinstall"):
        bundled("nope")


def test_a_data_root_around_the_package_imports_the_shipped_folder() -> None:
    assert importable("busbra_mini", SAMPLE_ROOT.parent) == SAMPLE_ROOT / "busbra_mini"


def test_elsewhere_one_copy_is_made_under_the_root_and_reused(tmp_path: Path) -> None:
    copy = importable("busbra_mini", tmp_path)
    assert copy == tmp_path / COPY_FOLDER / "busbra_mini"
    shipped = sorted(
        p.relative_to(bundled("busbra_mini")) for p in bundled("busbra_mini").rglob("*")
    )
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == shipped
    marker = copy / "marker"
    marker.write_text("kept")
    assert importable("busbra_mini", tmp_path) == copy and marker.read_text() == "kept"
    assert [p.name for p in (tmp_path / COPY_FOLDER).iterdir()] == ["busbra_mini"]  # no partial
