"""The encoder engine: each method's loss recipe, the schedule, a real short run on BUS-BRA."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.data import LesionCropDataset
from ml_backend.encoder.losses import LRVariant, lesion_recognition_loss
from ml_backend.encoder.model import EncoderOutput, LesionEncoder
from ml_backend.encoder.train import (
    BatchTargets,
    EncoderTrainConfig,
    batch_loss,
    class_weights,
    make_optimizer,
    train_encoder,
)
from ml_backend.training.hooks import EpochInfo, StepInfo, TrainHooks
from tests.ml_backend.encoder.busbra_mini import HOME, mini_samples

SIZE = 64


@pytest.fixture(scope="module")
def dataset() -> LesionCropDataset:
    return LesionCropDataset.load(mini_samples(), HOME, size=SIZE, margin=0.1, augment=True)


def _batch() -> tuple[EncoderOutput, BatchTargets]:
    torch.manual_seed(0)
    z = F.normalize(torch.randn(6, 4), dim=1)
    logits, birads = torch.randn(6, 2), torch.tensor([2.0, 3.0, 4.0, 5.0, 4.0, 1.0])
    targets = BatchTargets(
        lesions=torch.tensor([0, 0, 1, 1, 2, 2]),
        instances=torch.tensor([0, 1, 2, 2, 3, 4]),
        classes=torch.tensor([0, 0, 1, 1, -1, -1]),  # the last lesion has no pathology
        birads=torch.tensor([2.0, 2.0, 5.0, math.nan, 3.0, 3.0]),
    )
    return EncoderOutput(z, logits, birads), targets


def test_baseline_is_cross_entropy_over_the_labeled_crops_only() -> None:
    out, t = _batch()
    terms = batch_loss(out, t, EncoderTrainConfig(method="baseline"))
    assert set(terms) == {"ce", "birads"}
    torch.testing.assert_close(terms["ce"], F.cross_entropy(out.logits[:4], t.classes[:4]))
    known = torch.tensor([0, 1, 2, 4, 5])  # the nan BI-RADS target is skipped
    assert out.birads is not None
    expected = F.mse_loss(out.birads[known], t.birads[known])  # Shi et al.'s eq. 1: weight 1
    torch.testing.assert_close(terms["birads"], expected)


RECIPES = [("lr", LRVariant.LR), ("ir", LRVariant.IR), ("lr_entropy", LRVariant.LR)]


@pytest.mark.parametrize(("method", "variant"), RECIPES)
def test_contrastive_methods_add_their_term(method: str, variant: LRVariant) -> None:
    out, t = _batch()
    config = EncoderTrainConfig.model_validate({"method": method, "lr_weight": 0.5})
    terms = batch_loss(out._replace(birads=None), t, config)
    assert set(terms) == {"ce", "lr"}
    contrastive = lesion_recognition_loss(
        out.embedding, t.lesions, t.instances, t.classes, variant=variant, temperature=1.0
    )
    torch.testing.assert_close(terms["lr"], 0.5 * contrastive)
    p = out.logits[:4].softmax(dim=1)
    ce = F.cross_entropy(out.logits[:4], t.classes[:4])
    entropy = -(p * p.log()).sum(dim=1).mean()
    expected_ce = ce - 0.25 * entropy if method == "lr_entropy" else ce  # Shi et al.'s alpha
    torch.testing.assert_close(terms["ce"], expected_ce)


def test_an_ablation_replaces_the_methods_variant() -> None:
    out, t = _batch()
    config = EncoderTrainConfig(method="lr", lr_variant=LRVariant.LR_NO_SC)
    terms = batch_loss(out, t, config)
    expected = lesion_recognition_loss(
        out.embedding, t.lesions, t.instances, t.classes, variant=LRVariant.LR_NO_SC
    )
    torch.testing.assert_close(terms["lr"], expected)
    assert EncoderTrainConfig(method="baseline", lr_variant=LRVariant.IR).variant() is None


def test_no_weight_decay_on_norms_biases_and_gem_p() -> None:
    model = LesionEncoder(EncoderConfig(crop_size=SIZE))
    decayed, free = make_optimizer(model, EncoderTrainConfig()).param_groups
    assert decayed["weight_decay"] == 0.05 and free["weight_decay"] == 0.0
    assert any(p is model.pool.p for p in free["params"])
    assert all(p.ndim > 1 for p in decayed["params"])


def test_class_weights_are_inverse_frequencies(dataset: LesionCropDataset) -> None:
    benign = sum(s.pathology == 0 for s in dataset.samples)  # 35 of 62
    weights = class_weights(dataset)
    torch.testing.assert_close(weights, torch.tensor([62 / (2 * benign), 62 / (2 * (62 - benign))]))


def test_lr_training_on_real_crops_lowers_the_loss_and_is_deterministic(
    dataset: LesionCropDataset,
) -> None:
    config = EncoderTrainConfig(
        method="lr", epochs=2, lesions_per_batch=4, views_per_lesion=2, warmup_iters=0, seed=0
    )
    model_config = EncoderConfig(crop_size=SIZE, birads_head=True)
    steps: list[StepInfo] = []
    epochs: list[EpochInfo] = []

    class Hooks(TrainHooks):
        def after_step(self, info: StepInfo) -> None:
            steps.append(info)

        def after_epoch(self, info: EpochInfo) -> None:
            epochs.append(info)

    result = train_encoder(dataset, model_config, config, hooks=Hooks())
    assert all(math.isfinite(v) for v in result.losses) and len(result.losses) == 2
    assert result.losses[1] < result.losses[0]
    assert set(result.parts[0]) == {"ce", "lr", "birads"} == set(steps[0].parts)
    assert result.losses == [e.loss for e in epochs] and epochs[0].checkpoint is None
    n_lesions = len({s.lesion_key for s in dataset.samples})
    assert (steps[-1].epoch, steps[-1].step, steps[-1].steps) == (2, n_lesions // 4, n_lesions // 4)
    assert not result.model.training
    small = config.model_copy(update={"epochs": 1, "lesions_per_batch": 4})
    runs = [train_encoder(dataset.subset(range(8), augment=True), model_config, small)]
    runs.append(train_encoder(dataset.subset(range(8), augment=True), model_config, small))
    assert runs[0].losses == runs[1].losses
