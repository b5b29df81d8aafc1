"""The default lr_entropy recipe against the papers' totals, computed by hand on two crops."""

from __future__ import annotations

import math

import pytest
import torch

from core.birads import Birads
from ml_backend.encoder.model import EncoderOutput
from ml_backend.encoder.targets import birads_score
from ml_backend.encoder.train import BatchTargets, EncoderTrainConfig, batch_loss

E = math.e


def _two_crops() -> tuple[EncoderOutput, BatchTargets]:
    # Crop 0: p = (3/4, 1/4), benign, BI-RADS 4 predicted 0.5; crop 1: p = (1/2, 1/2),
    # malignant, BI-RADS 2 predicted 0. Two lesions, one crop each, orthogonal embeddings.
    out = EncoderOutput(
        embedding=torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
        logits=torch.tensor([[math.log(3), 0.0], [0.0, 0.0]]),
        birads=torch.tensor([0.5, 0.0]),
    )
    targets = BatchTargets(
        lesions=torch.tensor([0, 1]),
        instances=torch.tensor([0, 1]),
        classes=torch.tensor([0, 1]),
        birads=torch.tensor([birads_score(Birads.B4), birads_score(Birads.B2)]),
    )
    return out, targets


H = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) + math.log(2)  # H(p0) + H(p1)
MSE = ((0.5 - 0.485) ** 2 + 0.0) / 2  # Shi et al.'s eq. 1 regression term, weight 1
LR = math.log(1 + 1 / E)  # Guo et al.'s eq. 2 at t = 1: P(i) = {i}, N(i) = the other crop


def test_lr_entropy_defaults_are_shi_eq_3_on_the_multitask_loss_plus_guo_eq_4() -> None:
    out, targets = _two_crops()
    terms = batch_loss(out, targets, EncoderTrainConfig(method="lr_entropy"))
    ce = (-math.log(0.75) + math.log(2)) / 2
    assert float(terms["ce"]) == pytest.approx(ce - 0.25 / 2 * H)
    assert float(terms["birads"]) == pytest.approx(MSE, rel=1e-5)  # float32: (0.5 - 0.485)^2
    assert float(terms["lr"]) == pytest.approx(LR)
    total = float(sum(terms.values(), torch.tensor(0.0)))
    assert total == pytest.approx(ce + MSE - 0.25 / 2 * H + LR)


def test_the_confidence_penalty_keeps_the_class_weights() -> None:
    out, targets = _two_crops()
    weight = torch.tensor([1.0, 2.0])
    terms = batch_loss(out, targets, EncoderTrainConfig(method="lr_entropy"), weight)
    ce = (-math.log(0.75) + 2 * math.log(2)) / 3
    assert float(terms["ce"]) == pytest.approx(ce - 0.25 / 2 * H)
