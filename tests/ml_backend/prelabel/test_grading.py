"""The grader: the detector grading its own boxes, or the lesion encoder grading their crops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.birads import FIVE_WAY_SPACE, Birads
from ml_backend.detector.interface import RGBImage
from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.targets import birads_score
from ml_backend.prelabel.calibration import BiradsCuts, Calibrator
from ml_backend.prelabel.category import ShownBoxes, box_malignancy
from ml_backend.prelabel.grading import DetectorGrader, EncoderGrader, decode_birads
from ml_backend.prelabel.pipeline import GradedBoxes, PrelabelPipeline
from tests.ml_backend.evaluation.helpers import det, pred
from tests.ml_backend.prelabel.fakes import Fixed

IMAGE: RGBImage = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
BOXES = ((4.0, 4.0, 30.0, 30.0), (34.0, 30.0, 60.0, 60.0))
SPLIT_SPACE = (Birads.B1, Birads.B2, Birads.B3, Birads.B4A, Birads.B4B, Birads.B4C, Birads.B5)


def _fixed_encoder(p_malignant: float, score: float | None) -> LesionEncoder:
    """An encoder whose heads answer the same for every crop: weights 0, biases set."""
    model = LesionEncoder(EncoderConfig(crop_size=32, birads_head=score is not None)).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, math.log(p_malignant / (1 - p_malignant))]))
        if model.birads_head is not None and score is not None:
            model.birads_head.weight.zero_()
            model.birads_head.bias.fill_(score)
    return model


@pytest.mark.parametrize(
    ("score", "space", "expected"),
    [
        (0.0, FIVE_WAY_SPACE, Birads.B2),
        (0.4, FIVE_WAY_SPACE, Birads.B4),  # plain 4 targets 0.485: the splitter decides later
        (0.9, FIVE_WAY_SPACE, Birads.B5),
        (-3.0, FIVE_WAY_SPACE, Birads.B2),  # regression overshoots: still the nearest end
        (0.06, SPLIT_SPACE, Birads.B4A),
        (0.3, SPLIT_SPACE, Birads.B4B),
        (0.7, SPLIT_SPACE, Birads.B4C),
        (2.0, SPLIT_SPACE, Birads.B5),
    ],
)
def test_the_regressed_score_reads_as_the_nearest_category(
    score: float, space: tuple[Birads, ...], expected: Birads
) -> None:
    assert decode_birads(score, space) is expected


def test_decoding_is_ordinal_and_never_bi_rads_1() -> None:
    scores = np.linspace(-0.5, 1.5, 81)
    decoded = [decode_birads(float(s), SPLIT_SPACE) for s in scores]
    orders = [c.order for c in decoded]
    assert orders == sorted(orders) and Birads.B1 not in decoded
    assert decode_birads(birads_score(Birads.B4B), SPLIT_SPACE) is Birads.B4B
    with pytest.raises(ValueError, match="no lesion category"):
        decode_birads(0.5, (Birads.B1,))


def test_the_encoder_grades_every_box_from_its_crop() -> None:
    grader = EncoderGrader("enc-1", _fixed_encoder(0.8, 0.975), FIVE_WAY_SPACE)
    answer = pred(det(BOXES[0], Birads.B2, 0.9), det(BOXES[1], Birads.B3, 0.4))
    graded = grader.grade(IMAGE, answer)
    assert [d.category for d in graded.detections] == [Birads.B5, Birads.B5]
    assert [d.malignancy for d in graded.detections] == pytest.approx([0.8, 0.8], abs=1e-5)
    assert [d.score for d in graded.detections] == [0.9, 0.4]  # the detector still ranks them
    assert grader.grade(IMAGE, pred()) == pred()


def test_an_encoder_without_the_bi_rads_head_keeps_the_detectors_category() -> None:
    grader = EncoderGrader("enc-1", _fixed_encoder(0.3, None), FIVE_WAY_SPACE)
    graded = grader.grade(IMAGE, pred(det(BOXES[0], Birads.B3, 0.9)))
    assert graded.detections[0].category is Birads.B3
    assert box_malignancy(graded.detections[0]) == pytest.approx(0.3, abs=1e-5)


def test_the_detector_grader_reads_the_detectors_probabilities() -> None:
    answer = pred(det(BOXES[0], Birads.B5, 0.9, {Birads.B5: 0.7, Birads.B2: 0.3}))
    graded = DetectorGrader().grade(IMAGE, answer)
    assert graded == answer and box_malignancy(graded.detections[0]) == pytest.approx(0.7)


def test_the_pipeline_stores_the_encoders_grades_calibrated() -> None:
    calibrator = Calibrator(
        grader="encoder", coef=3.0, intercept=-1.0, n_fit=8, target_sensitivity=0.95, threshold=0.2
    )
    answer = pred(det(BOXES[0], Birads.B2, 0.9, {Birads.B2: 0.9, Birads.B5: 0.1}))
    pipeline = PrelabelPipeline(
        "det-1",
        Fixed(answer),
        ShownBoxes(),
        calibrator=calibrator,
        grader=EncoderGrader("enc-1", _fixed_encoder(0.6, 0.3), FIVE_WAY_SPACE),
    )
    prelabel = pipeline.predict([IMAGE])[0]
    assert prelabel.category is Birads.B4  # 0.3 is nearest plain 4 in a five-way space
    assert prelabel.probability == pytest.approx(calibrator(0.6), abs=1e-5)
    row = prelabel.row(1)
    assert row.boxes[0].birads is Birads.B4 and row.boxes[0].score == 0.9
    assert row.produced_by is not None
    assert (row.produced_by.grader, row.produced_by.grader_version) == ("encoder", "enc-1")
    graded = GradedBoxes(pipeline).predict([IMAGE])[0]  # what the evaluator scores
    assert graded.detections[0].malignancy == pytest.approx(0.6, abs=1e-5)


def test_flip_tta_averages_the_crop_and_its_mirror() -> None:
    torch.manual_seed(0)
    model = LesionEncoder(EncoderConfig(crop_size=32, birads_head=True)).eval()
    crops = torch.rand(3, 3, 32, 32)
    plain = EncoderGrader("e", model, FIVE_WAY_SPACE)
    p, s = plain._heads(crops)
    p_m, s_m = plain._heads(crops.flip(-1))
    p_tta, s_tta = EncoderGrader("e", model, FIVE_WAY_SPACE, flip_tta=True)._heads(crops)
    assert s is not None and s_m is not None and s_tta is not None
    assert torch.allclose(p_tta, (p + p_m) / 2, atol=1e-6)
    assert torch.allclose(s_tta, (s + s_m) / 2, atol=1e-6)
    assert not torch.allclose(p, p_m)  # a random encoder is not mirror-symmetric: a real test


def test_cut_points_pick_the_step_and_the_nearest_target_the_subcategory() -> None:
    cuts = BiradsCuts(uppers=(-0.2, -0.1, 0.0), n_fit=40)  # a head that shrank to the mean
    assert decode_birads(-0.15, FIVE_WAY_SPACE, cuts) is Birads.B3
    assert decode_birads(-0.05, FIVE_WAY_SPACE, cuts) is Birads.B4
    assert decode_birads(-0.05, FIVE_WAY_SPACE) is Birads.B2  # without cuts: nearest target
    assert decode_birads(-0.05, SPLIT_SPACE, cuts) is Birads.B4A  # within 4: nearest is 4A
    assert decode_birads(0.5, SPLIT_SPACE, cuts) is Birads.B5
    no_4 = (Birads.B1, Birads.B2, Birads.B3, Birads.B5)
    assert decode_birads(-0.05, no_4, cuts) in no_4  # a step the space lacks: nearest target
