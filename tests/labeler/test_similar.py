"""`labeler encoder index` and `labeler similar` on the bundled BUS-BRA sample, via the CLI.

The encoder is random-init (tests/factories.register_encoder): its distances mean nothing, so
these tests check the plumbing and the ranking rules, not retrieval quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import (
    add_prelabels,
    import_sample,
    register_encoder,
    register_random_detector,
)
from core.birads import Birads
from core.settings import Settings
from db.lesion_boxes import top_box
from db.models import Image, Label, LabelStatus, Lesion, Patient, ReferenceLabel
from db.queries import predictions as prediction_queries
from db.schemas import BoxRecord
from labeler.cli import app
from labeler.context import AppContext
from labeler.jobs.similar import similar

runner = CliRunner()


def _json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture
def sample(settings: Settings, sessions: sessionmaker[Session], busbra_dir: Path) -> Settings:
    import_sample(settings, sessions, busbra_dir, "busbra")
    return settings


def _id(sessions: sessionmaker[Session], source_id: str) -> int:
    with sessions() as s:
        return s.scalars(select(Image.id).where(Image.source_id == source_id)).one()


def _views(sessions: sessionmaker[Session]) -> dict[str, list[str]]:
    """lesion key -> source ids of its images."""
    with sessions() as s:
        rows = s.execute(
            select(Lesion.key, Image.source_id).join(Image, Image.lesion_id == Lesion.id)
        )
        out: dict[str, list[str]] = {}
        for key, source in rows:
            out.setdefault(key, []).append(str(source))
    return out


def test_similar_returns_k_matches_with_the_other_view_first(
    sample: Settings, sessions: sessionmaker[Session]
) -> None:
    register_encoder(sample, sessions)
    built = _json("encoder", "index")
    assert built["confirmed"] == 62 and built["probes"] == 0
    assert Path(built["path"]).is_file()

    data = _json("similar", "bus_0001-l", "--k", "9")
    matches = data["matches"]
    assert data["query"]["source_id"] == "bus_0001-l" and data["query"]["box_origin"] == "reference"
    assert len(matches) == 9 and [m["rank"] for m in matches] == list(range(1, 10))
    assert matches[0]["source_id"] == "bus_0001-r" and matches[0]["same_lesion"] is True
    assert "bus_0001-l" not in [m["source_id"] for m in matches]
    rest = [m["distance"] for m in matches[1:]]
    assert rest == sorted(rest) and all(0 <= d <= 2 for d in rest)
    assert all(m["birads"] and m["pathology"] in ("benign", "malignant") for m in matches)
    by_id = _json("similar", str(data["query"]["image_id"]))
    assert by_id["matches"] == matches
    for unknown in ("bus_9999-l", "999999"):
        refused = runner.invoke(app, ["similar", unknown])
        assert refused.exit_code == 2 and f"no image {unknown!r}" in refused.output

    text = runner.invoke(app, ["similar", "bus_0002-r", "--k", "4"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[2].split()[:3] == ["1", str(_id(sessions, "bus_0002-l")), "bus_0002-l"]
    assert lines[2].split()[3] == "*"  # the other view of the same lesion
    assert len([line for line in lines if line.strip()[:1].isdigit()]) == 4
    with sessions() as s:
        secrets = [*s.scalars(select(Patient.key)), *s.scalars(select(Lesion.key))]
    assert not any(key in text.output for key in secrets)

    # every query: its other view first when the lesion has one, never itself
    app_ctx = AppContext(sample)
    for views in _views(sessions).values():
        for source in views:
            result = similar(app_ctx, source, k=3)
            found = [m.row.source_id for m in result.matches]
            assert source not in found and len(found) == 3
            assert (found[0] in views) == (len(views) > 1)


def test_clear_errors_without_encoder_or_index(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    none = runner.invoke(app, ["similar", "bus_0001-l"])
    assert none.exit_code == 2 and "no active lesion encoder" in none.output
    assert runner.invoke(app, ["encoder", "index"]).exit_code == 2
    version = register_encoder(settings, sessions)
    empty = runner.invoke(app, ["encoder", "index"])
    assert empty.exit_code == 2 and "no confirmed lesions" in empty.output
    no_index = runner.invoke(app, ["similar", "bus_0001-l"])
    assert no_index.exit_code == 2 and "labeler encoder index" in no_index.output
    assert version in no_index.output


def _drop_reference(sessions: sessionmaker[Session], source_id: str) -> tuple[int, BoxRecord]:
    with sessions.begin() as s:
        image = s.scalars(select(Image).where(Image.source_id == source_id)).one()
        ref = s.scalars(select(ReferenceLabel).where(ReferenceLabel.image_id == image.id)).one()
        box = ref.boxes[0]
        s.execute(delete(ReferenceLabel).where(ReferenceLabel.id == ref.id))
        return image.id, box


def test_accepted_labels_are_matches_and_pool_images_query_their_predicted_box(
    sample: Settings, sessions: sessionmaker[Session]
) -> None:
    accepted_id, box = _drop_reference(sessions, "bus_0002-l")
    with sessions.begin() as s:
        s.add(
            Label(image_id=accepted_id, status=LabelStatus.ACCEPTED, boxes=[box], birads=box.birads)
        )
    pool_id, _ = _drop_reference(sessions, "bus_0003-l")
    detector = register_random_detector(sample, sessions)
    add_prelabels(sessions, detector, [pool_id], Birads.B4A)
    register_encoder(sample, sessions)

    built = _json("encoder", "index")
    assert built["confirmed"] == 61 and built["probes"] == 1
    assert built["detector_version"] == detector
    data = _json("similar", "bus_0002-r", "--k", "61")
    first = data["matches"][0]
    assert first["source_id"] == "bus_0002-l" and first["label"] == "accepted"
    assert first["pathology"] is None  # reader labels carry no biopsy result
    assert pool_id not in [m["image_id"] for m in data["matches"]]  # a probe is no match

    pool = _json("similar", str(pool_id))
    assert pool["query"]["box_origin"] == "predicted" and pool["query"]["birads"] == "4A"
    assert pool["matches"][0]["source_id"] == "bus_0003-r"

    # no label and no stored prediction: the active detector pre-labels it on the spot
    fresh_id, _ = _drop_reference(sessions, "bus_0004-l")
    fresh = runner.invoke(app, ["similar", "bus_0004-l", "--json"])
    with sessions() as s:
        stored = prediction_queries.cached_prediction(
            s, image_id=fresh_id, model_version_id=detector
        )
    assert stored is not None  # the random detector's boxes, kept like the backend's misses
    if top_box(stored.boxes) is None:
        assert fresh.exit_code == 2 and "finds no lesion" in fresh.output
    else:
        assert fresh.exit_code == 0, fresh.output
        assert json.loads(fresh.stdout)["query"]["box_origin"] == "predicted"
