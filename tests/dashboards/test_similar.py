"""Similar lesions page: a helpful message before there is an index, then the top-9 grid,
which must match `labeler similar` for the same image (one ranking, read two ways)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Image

from bench.support.factories import import_sample, register_encoder
from core.settings import Settings
from dashboards import neighbours
from db.models import Image as ImageRow
from db.models import Lesion, Patient
from labeler.context import AppContext
from labeler.jobs.similar import build_index, similar
from ml_backend.encoder import index as ml_index
from ml_backend.registry.kinds import ENCODER_KIND
from tests.dashboards.helpers import table


def _messages(at: AppTest) -> str:
    return " ".join(str(e.value) for e in [*at.info, *at.warning, *at.error])


def test_page_says_what_to_run_before_there_is_an_index(
    settings: Settings,
    sessions: sessionmaker[Session],
    busbra_dir: Path,
    open_page: Callable[[str | None], AppTest],
) -> None:
    import_sample(settings, sessions, busbra_dir, "busbra")
    at = open_page("similar")
    assert "labeler encoder train" in _messages(at) and not at.get("image")
    version = register_encoder(settings, sessions)
    at = open_page("similar")
    assert f"Encoder {version} has no similar-lesion index" in _messages(at)
    assert "labeler encoder index" in _messages(at)


@pytest.mark.sqlite_only  # an encoder's embeddings: ~5 s a run, the database part is an id lookup
def test_grid_shows_the_nine_matches_labeler_similar_finds(
    settings: Settings,
    sessions: sessionmaker[Session],
    busbra_dir: Path,
    open_page: Callable[[str | None], AppTest],
) -> None:
    import_sample(settings, sessions, busbra_dir, "busbra")
    register_encoder(settings, sessions)
    app_ctx = AppContext(settings)
    build_index(app_ctx)
    with sessions() as s:
        query = s.scalars(select(ImageRow.id).where(ImageRow.source_id == "bus_0004-r")).one()
        secrets = [*s.scalars(select(Patient.key)), *s.scalars(select(Lesion.key))]
    expected = similar(app_ctx, "bus_0004-r", k=9)

    at = open_page("similar")
    at.selectbox(key="similar_image").set_value(query).run()
    assert not at.exception, [e.value for e in at.exception]
    rows = table(at, with_column="distance")
    assert [(r["rank"], r["image"]) for r in rows] == [
        (m.rank, m.row.image_id) for m in expected.matches
    ]
    assert [r["distance"] for r in rows] == [round(m.distance, 4) for m in expected.matches]
    assert rows[0]["source id"] == "bus_0004-l" and rows[0]["same lesion"] is True
    images = at.get("image")
    assert len(images) == 10  # the query crop and a 3 x 3 grid
    captions = [c for image in images if isinstance(image, Image) for c in image.captions]
    assert captions[0].startswith(f"image {query} · bus_0004-r · BI-RADS")
    assert captions[1].startswith("1. image") and "same lesion" in captions[1]
    text = " ".join([*captions, *(str(c.value) for c in at.caption)])
    assert not any(key in text for key in secrets)


def test_the_page_reads_the_format_the_encoder_side_writes() -> None:
    assert neighbours.FORMAT == ml_index.FORMAT and neighbours.ENCODER_KIND == ENCODER_KIND
    assert neighbours.index_file(Path("/h"), "e") == ml_index.index_file(Path("/h"), "e")
