"""The dashboard's only way to the database: cached, read-only calls of `db.reports`.

Every loader takes the database URL, so two databases (two test runs, two sites) never share a
cache entry. The TTL is short because the loop writes in the background: a page is at most
`TTL_SECONDS` behind the database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.settings import Settings
from dashboards import agreement_stats, neighbours
from db import lesion_boxes
from db.queries import images as image_queries
from db.queries import versions as version_queries
from db.reports import agreement as agreement_reports
from db.reports import database as database_reports
from db.reports import evaluation as evaluation_reports
from db.reports import images as image_reports
from db.reports import progress as progress_reports
from db.reports import versions as version_reports

TTL_SECONDS = 30
T = TypeVar("T")


def settings() -> Settings:
    """Settings as `labeler` sees them (LABELER_* variables, `.env`); read on every rerun."""
    return Settings()


@st.cache_resource(show_spinner=False)
def engine(url: str) -> Engine:
    return database_reports.readonly_engine(url, busy_timeout_ms=Settings().sqlite_busy_timeout_ms)


def _read(url: str, query: Callable[..., T], **kwargs: Any) -> T:
    with Session(engine(url)) as session:
        return query(session, **kwargs)


@st.cache_data(ttl=5, show_spinner=False)
def database_status(url: str) -> database_reports.DatabaseStatus:
    return database_reports.database_status(url=url, engine=engine(url))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def image_counts(url: str) -> image_queries.ImageCounts:
    return _read(url, image_queries.image_counts)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def status_timeline(url: str) -> progress_reports.StatusTimeline:
    return _read(url, progress_reports.status_timeline)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def reviews_per_reader_day(url: str) -> list[progress_reports.ReaderDay]:
    return _read(url, progress_reports.reviews_per_reader_day)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def consensus_times(url: str) -> progress_reports.ConsensusTimes:
    return _read(url, progress_reports.consensus_times)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def review_ratings(url: str) -> agreement_reports.ReviewRatings:
    return _read(url, agreement_reports.review_ratings)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def fleiss_by_round(url: str) -> list[dict[str, Any]]:
    return agreement_stats.fleiss_by_round(review_ratings(url))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def pairwise_cohen(url: str, review_round: int | None) -> list[dict[str, Any]]:
    return agreement_stats.pairwise_cohen(review_ratings(url), review_round=review_round)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def disputed_images(
    url: str, review_round: int | None, limit: int
) -> list[agreement_reports.DisputedImage]:
    return _read(url, agreement_reports.disputed_images, review_round=review_round, limit=limit)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def model_lineage(url: str) -> list[version_reports.VersionRow]:
    return _read(url, version_reports.model_lineage)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def promotion_log(url: str) -> list[version_reports.PromotionRow]:
    return _read(url, version_reports.promotion_log)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def learning_curve(url: str) -> list[version_reports.LearningPoint]:
    return _read(url, version_reports.learning_curve)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def simulation_curves(url: str) -> list[version_reports.SimulationCurvePoint]:
    return _read(url, version_reports.simulation_curves)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def evaluation_keys(url: str) -> list[evaluation_reports.EvaluationKey]:
    return _read(url, evaluation_reports.evaluation_keys)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def evaluation_report(url: str, evaluation_id: int) -> evaluation_reports.EvaluationReport | None:
    return _read(url, evaluation_reports.evaluation_report, evaluation_id=evaluation_id)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def screening_scores(
    url: str, model_version_id: str, split: str
) -> evaluation_reports.ScreeningScores:
    query = evaluation_reports.screening_scores
    return _read(url, query, model_version_id=model_version_id, split=split)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def image_listing(url: str) -> image_reports.ImageListing:
    return _read(url, image_reports.image_listing)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def image_detail(url: str, image_id: int) -> image_reports.ImageDetail | None:
    return _read(url, image_reports.image_detail, image_id=image_id)


def active_model(url: str, kind: str) -> str | None:
    """Not cached: one primary-key read, and a promotion should show on the next rerun."""
    return _read(url, version_queries.active_model_id, kind=kind)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def crop_sources(url: str, image_ids: tuple[int, ...]) -> dict[int, lesion_boxes.CropSource]:
    return _read(url, lesion_boxes.crop_sources, image_ids=image_ids)


@st.cache_data(max_entries=4, show_spinner=False)
def neighbour_table(path: str, mtime_ns: int) -> neighbours.NeighbourTable:
    """Keyed by the file's mtime: a rebuilt index is read again, an unchanged one is not."""
    return neighbours.read_table(Path(path))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def set_aside_events(url: str) -> progress_reports.SetAsideEvents:
    return _read(url, progress_reports.set_aside_events)
