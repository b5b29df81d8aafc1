"""The bundled real samples are intact and carry their licence and attribution."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import BUNDLED

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.parametrize("name", ["busbra_mini", "breast_lesions_usg_mini"])
def test_sample_files_match_their_checksums(name: str) -> None:
    folder = BUNDLED / name
    checked = 0
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        if rel.endswith(".md"):  # ATTRIBUTION.md was edited after the sums were written
            continue
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest, rel
        checked += 1
    assert checked > 50


def test_licences_and_credits_are_present() -> None:
    assert (BUNDLED / "busbra_mini" / "LICENSE.txt").read_text().startswith("Copyright")
    for name in ("busbra_mini", "breast_lesions_usg_mini"):
        assert (BUNDLED / name / "ATTRIBUTION.md").stat().st_size > 500
    readme = README.read_text()
    assert "10.1002/mp.16812" in readme  # BUS-BRA
    assert "10.7937/9WKK-Q141" in readme and "10.1038/s41597-024-02984-z" in readme  # BrEaST
