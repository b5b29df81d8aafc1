"""The similar-lesion index on constructed embeddings: exact ranks, exclusion, the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.birads import Birads, Pathology
from db.lesion_boxes import BoxOrigin
from ml_backend.encoder.index import GRID, EmbeddingIndex, IndexFormatError, IndexRow

BOX = (10.0, 20.0, 50.0, 60.0)


def _row(image_id: int, lesion: str, origin: BoxOrigin = BoxOrigin.REFERENCE) -> IndexRow:
    return IndexRow(
        image_id=image_id,
        box=BOX,
        origin=origin,
        birads=Birads.B4A if image_id % 2 else Birads.B2,
        pathology=Pathology.MALIGNANT if image_id % 2 else None,
        lesion_key=lesion,
        patient_key=f"p-{lesion}",
        view="left",
        dataset="busbra",
        source_id=f"bus_{image_id:04d}",
    )


ROWS = [
    _row(1, "A"),  # the query's own image
    _row(2, "A"),  # its other view, far away in embedding space
    _row(3, "B"),
    _row(4, "C"),
    _row(5, "D", BoxOrigin.PREDICTED),  # a probe: identical to the query, never a match
    _row(6, "E", BoxOrigin.ACCEPTED),
]
EMBEDDINGS = np.array(
    [[1, 0, 0], [0, 1, 0], [3, 4, 0], [0.6, 0.8, 0], [1, 0, 0], [0, 0, -2]], dtype=np.float32
)


@pytest.fixture
def index() -> EmbeddingIndex:
    return EmbeddingIndex(EMBEDDINGS, ROWS, encoder_version="encoder-x")


def test_distance_is_one_minus_cosine_and_ranks_ascending(index: EmbeddingIndex) -> None:
    matches = index.query([2, 0, 0], k=10)
    assert [m.row.image_id for m in matches] == [1, 3, 4, 2, 6]
    # rows 3 and 4 point the same way (3,4,0)/5 = (0.6,0.8,0): a tie, kept in row order
    assert [m.distance for m in matches] == pytest.approx([0.0, 0.4, 0.4, 1.0, 1.0])
    assert [m.rank for m in matches] == [1, 2, 3, 4, 5]
    assert all(not m.same_lesion for m in matches)


def test_query_image_is_excluded_and_its_other_view_comes_first(index: EmbeddingIndex) -> None:
    matches = index.query([1, 0, 0], k=3, exclude_image_id=1, lesion_key="A")
    assert [m.row.image_id for m in matches] == [2, 3, 4]
    assert [m.same_lesion for m in matches] == [True, False, False]
    assert matches[0].distance == pytest.approx(1.0)


def test_probes_are_never_matches_and_k_caps(index: EmbeddingIndex) -> None:
    assert index.n_confirmed == 5
    assert all(m.row.confirmed for m in index.query([1, 0, 0], k=100))
    assert [m.row.image_id for m in index.query([0, 0, 1], k=2)] == [1, 2]  # 6 is opposite
    assert index.query([1, 0, 0], k=0) == []


def test_embedding_of_finds_a_stored_box(index: EmbeddingIndex) -> None:
    found = index.embedding_of(3, (10.2, 20.0, 50.0, 59.8))
    assert found is not None and found.tolist() == pytest.approx([0.6, 0.8, 0.0])
    assert index.embedding_of(3, (0.0, 0.0, 5.0, 5.0)) is None
    assert index.rows_of(5) == [4]


def test_a_query_of_another_dimension_is_refused(index: EmbeddingIndex) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        index.query([1, 0], k=1)
    with pytest.raises(ValueError, match="rows for"):
        EmbeddingIndex(EMBEDDINGS, ROWS[:2], encoder_version="e")


def test_save_load_round_trip_keeps_rows_embeddings_and_neighbours(
    index: EmbeddingIndex, tmp_path: Path
) -> None:
    path = tmp_path / "indexes" / "encoder-x" / "index.npz"
    index.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["index.npz"]  # no temporary left
    loaded = EmbeddingIndex.load(path)
    assert loaded.rows == index.rows and loaded.encoder_version == "encoder-x"
    np.testing.assert_array_equal(loaded.embeddings, index.embeddings)
    with np.load(path, allow_pickle=False) as data:
        neighbours, distance = data["neighbours"], data["neighbour_distance"]
        assert json.loads(str(data["meta"]))["grid"] == GRID
    assert neighbours.shape == (len(ROWS), GRID)
    # row 0 (image 1, lesion A): its other view first, then by distance; -1 pads the rest
    assert neighbours[0].tolist()[:5] == [1, 2, 3, 5, -1]
    assert distance[0, :4] == pytest.approx([1.0, 0.4, 0.4, 1.0])
    assert np.isnan(distance[0, 4])


def test_another_format_is_refused(index: EmbeddingIndex, tmp_path: Path) -> None:
    path = tmp_path / "index.npz"
    index.save(path)
    with np.load(path, allow_pickle=False) as data:
        arrays = dict(data)
    arrays["meta"] = np.array(json.dumps({"format": 99, "encoder_version": "e"}))
    np.savez(path, **arrays)
    with pytest.raises(IndexFormatError, match="format 99"):
        EmbeddingIndex.load(path)
