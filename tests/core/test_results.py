"""core.results: the malignancy score, the gate's reading of a result, and derived summaries."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.birads import Birads, Reading
from core.results import (
    BinaryRates,
    BiradsTable,
    ConfusionMatrix,
    DetectionScores,
    Estimate,
    EvaluationMetrics,
    Screening,
    SimulationMetrics,
    ValidationSummary,
    malignancy_score,
)

EMPTY = ConfusionMatrix(labels=(), counts=())
ACC = Estimate(value=0.75, ci_low=0.3, ci_high=0.95, successes=3, total=4)


def _metrics(*, map50: float | None, sen_at_spe80: float | None) -> EvaluationMetrics:
    return EvaluationMetrics(
        n_images=4,
        score_threshold=0.5,
        detection=DetectionScores(map50=map50, lesion_map50=0.6),
        birads=BiradsTable(matrix=EMPTY, per_category={}),
        screening=Screening(
            plain_4_counted_as=Reading.MALIGNANT,
            matrix=EMPTY,
            rates=BinaryRates(acc=ACC),
            auc=0.8,
            sen_at_spe80=sen_at_spe80,
            roc=None,
        ),
    )


def test_malignancy_score_is_the_top_box_mass_on_malignant_readings() -> None:
    top = (0.9, {Birads.B4: 0.5, Birads.B4B: 0.2, Birads.B3: 0.3})
    other = (0.4, {Birads.B5: 1.0})
    assert malignancy_score([other, top]) == pytest.approx(0.7)  # plain 4 malignant
    assert malignancy_score([other, top], plain_4=Reading.BENIGN) == pytest.approx(0.2)
    assert malignancy_score([]) == 0.0  # nothing found: not malignant
    assert malignancy_score([(0.9, None), other]) is None  # the top box kept no probabilities


def test_gate_reads_typed_fields() -> None:
    metrics = _metrics(map50=0.42, sen_at_spe80=0.7)
    assert metrics.gate_value("map50") == 0.42
    assert metrics.gate_value("sen_at_spe80") == 0.7
    assert _metrics(map50=None, sen_at_spe80=None).gate_value("map50") is None


def test_summaries_take_their_numbers_from_the_evaluation() -> None:
    metrics = _metrics(map50=0.42, sen_at_spe80=None)
    point = SimulationMetrics.of(metrics, version="v7")
    assert (point.version, point.map50, point.lesion_map50, point.auc) == ("v7", 0.42, 0.6, 0.8)
    assert (point.acc, point.sen, point.spe) == (0.75, None, None)
    val = ValidationSummary.of(metrics)
    assert (val.n_images, val.map50, val.screening_acc) == (4, 0.42, 0.75)


def test_results_are_frozen_and_refuse_unknown_fields() -> None:
    metrics = _metrics(map50=0.42, sen_at_spe80=None)
    with pytest.raises(ValidationError):
        metrics.n_images = 5  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        DetectionScores.model_validate({"map_50": 0.4})
    assert EvaluationMetrics.model_validate_json(metrics.model_dump_json()) == metrics
