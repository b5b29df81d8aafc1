"""The torchvision Faster R-CNN detector: trains, predicts in the contract's terms, round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torchvision.ops import box_iou

from core.birads import FIVE_WAY_SPACE, Birads
from core.errors import BadInputError
from ml_backend.detector.config import DetectorConfig, UnknownConfigError, load_config
from ml_backend.detector.data import map_category
from ml_backend.detector.frcnn import FasterRCNNDetector, build_model, to_input
from ml_backend.detector.roi_heads import ProbRoIHeads


@pytest.fixture(scope="module")
def small() -> DetectorConfig:
    return load_config("small")


def _image(seed: int, shape: tuple[int, int] = (240, 320)) -> npt.NDArray[np.uint8]:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, shape, dtype=np.uint8)
    img[80:140, 100:180] = 200  # a bright "lesion"
    return img


def test_presets_load_with_their_label_spaces(small: DetectorConfig) -> None:
    assert small.backbone == "resnet18" and small.image_size == 384
    r101 = load_config("r101-800")
    assert (r101.backbone, r101.image_size) == ("resnet101", 800)
    assert small.categories == FIVE_WAY_SPACE
    assert Birads.B1 not in small.box_categories  # BI-RADS 1 is "no box"
    with pytest.raises(UnknownConfigError, match="presets: r101-800, small, tiny"):
        load_config("huge")


def test_forward_and_backward_step_of_the_small_config(small: DetectorConfig) -> None:
    torch.manual_seed(0)
    detector = FasterRCNNDetector(small)
    model = detector.model.train()
    images = [to_input(_image(i), small.image_size) for i in range(2)]
    targets = [
        {"boxes": torch.tensor([[120.0, 128, 218, 225]]), "labels": torch.tensor([2])},
        {"boxes": torch.zeros((0, 4)), "labels": torch.zeros((0,), dtype=torch.int64)},  # BI-RADS 1
    ]
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_predictions_follow_the_contract(small: DetectorConfig) -> None:
    torch.manual_seed(0)
    detector = FasterRCNNDetector(small.model_copy(update={"box_score_thresh": 0.0}))
    (pred,) = detector.predict([_image(3)])
    assert 0 < len(pred.detections) <= small.box_detections_per_img
    scores = [d.score for d in pred.detections]
    assert scores == sorted(scores, reverse=True)
    for det in pred.detections:
        assert set(det.probs) == set(small.box_categories)
        assert det.score == pytest.approx(det.probs[det.category])  # the top class is the label
        assert sum(det.probs.values()) <= 1.0 + 1e-5  # background takes the rest
        x0, y0, x1, y1 = det.xyxy
        assert 0 <= x0 <= x1 <= 320 and 0 <= y0 <= y1 <= 240  # original pixels, not 384x384
    boxes = torch.tensor([d.xyxy for d in pred.detections])
    iou = box_iou(boxes, boxes).fill_diagonal_(0)
    assert float(iou.max()) <= 0.5 + 1e-6  # one box per region across classes
    assert pred.uncertainty == pytest.approx(1 - pred.detections[0].score)


def test_the_model_is_built_with_prob_heads_that_keep_the_configured_settings(
    small: DetectorConfig,
) -> None:
    model = build_model(small).eval()
    heads = model.roi_heads
    assert type(heads) is ProbRoIHeads  # constructed as such, not re-classed
    matcher, sampler = heads.proposal_matcher, heads.fg_bg_sampler
    assert (matcher.high_threshold, matcher.low_threshold) == (0.5, 0.5)  # torchvision's
    assert (sampler.batch_size_per_image, sampler.positive_fraction) == (
        small.box_batch_size_per_image,
        0.25,
    )
    assert heads.box_coder.weights == (10.0, 10.0, 5.0, 5.0) and heads.nms_thresh == 0.5
    assert (heads.score_thresh, heads.detections_per_img) == (
        small.box_score_thresh,
        small.box_detections_per_img,
    )
    heads.score_thresh = 0.0
    with torch.no_grad():
        (out,) = model([to_input(_image(1), small.image_size)])
    n = len(out["boxes"])
    assert n > 0 and out["probs"].shape == (n, len(small.box_categories))
    chosen = out["probs"].gather(1, (out["labels"] - 1)[:, None])[:, 0]
    torch.testing.assert_close(chosen, out["scores"])  # each box's score is its label's probability


def test_save_then_load_gives_identical_predictions(small: DetectorConfig, tmp_path: Path) -> None:
    torch.manual_seed(0)
    detector = FasterRCNNDetector(small.model_copy(update={"box_score_thresh": 0.0}))
    images = [_image(5), _image(6, (300, 200))]
    before = detector.predict(images)
    detector.save(tmp_path / "v1")
    after = FasterRCNNDetector.load(tmp_path / "v1").predict(images)
    assert after == before


def test_a_local_backbone_weights_file_is_loaded(small: DetectorConfig, tmp_path: Path) -> None:
    import torchvision

    resnet = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(resnet.conv1.weight, 0.125)
    torch.save(resnet.state_dict(), tmp_path / "r18.pth")
    detector = FasterRCNNDetector(
        small.model_copy(update={"backbone_weights": str(tmp_path / "r18.pth")})
    )
    assert torch.all(detector.model.backbone.body.conv1.weight == 0.125)
    torch.save({"nothing": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(BadInputError, match="lacks backbone keys"):
        FasterRCNNDetector(small.model_copy(update={"backbone_weights": str(tmp_path / "bad.pth")}))


@pytest.mark.parametrize(
    ("category", "space", "expected"),
    [
        (Birads.B4A, FIVE_WAY_SPACE, Birads.B4),
        (Birads.B4, FIVE_WAY_SPACE, Birads.B4),
        (Birads.B4, (Birads.B4A, Birads.B4B), None),
        (Birads.B5, (Birads.B2, Birads.B5), Birads.B5),
    ],
)
def test_categories_map_into_a_label_space(
    category: Birads, space: tuple[Birads, ...], expected: Birads | None
) -> None:
    assert map_category(category, space) is expected
