"""Every loss against a value computed here, by hand (closed forms) or by a plain numpy loop."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
import torch

from ml_backend.encoder.losses import (
    LRVariant,
    birads_regression_loss,
    classification_loss,
    confidence_penalty_loss,
    hard_triplet_loss,
    lesion_recognition_loss,
    masked_contrastive_loss,
    nt_xent_loss,
)

E = math.e


def _t(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _ids(*values: int) -> torch.Tensor:
    return torch.tensor(values)


# Four crops: 0 and 1 are two augmentations of image 0, crop 2 is the other view (image 1) of
# the same lesion A, crop 3 is lesion B. Cosines: s01 = 1, s02 = 0, s03 = -1, s12 = 0,
# s13 = -1, s23 = 0, s_ii = 1. Guo et al.'s eq. 2 at t = 1 (no temperature), per anchor i:
#   -sum_{j in P(i)} log(e^{s_ij} / D_i), D_i = sum_{k in P(i) u N(i)} e^{s_ik}, P(i) holds i;
# the loss is the sum over the four anchors divided by N_b = 4.
Z4 = _t((1, 0), (1, 0), (0, 1), (-1, 0))
LESION4, IMAGE4 = _ids(0, 0, 0, 1), _ids(0, 0, 1, 2)
LOG = math.log


def _lr(variant: LRVariant, classes: torch.Tensor, temperature: float = 1.0) -> float:
    loss = lesion_recognition_loss(
        Z4, LESION4, IMAGE4, classes, variant=variant, temperature=temperature
    )
    return float(loss)


def test_lr_is_eq_2_with_eq_3_sets() -> None:
    # Anchors 0, 1: P = {0, 1, 2} (s = 1, 1, 0), N = {3} (s = -1): 3 log D - 2, D = 2e + 1 + 1/e.
    # Anchor 2: P = {0, 1, 2} (s = 0, 0, 1), N = {3} (s = 0): 3 log(3 + e) - 1.
    # Anchor 3: P = {3} (s = 1), N = {0, 1, 2} (s = -1, -1, 0): log(e + 2/e + 1) - 1.
    anchors = 2 * (3 * LOG(2 * E + 1 + 1 / E) - 2) + 3 * LOG(3 + E) - 1 + LOG(E + 2 / E + 1) - 1
    assert _lr(LRVariant.LR, _ids(0, 0, 0, 1)) == pytest.approx(anchors / 4)
    default = lesion_recognition_loss(Z4, LESION4, IMAGE4, _ids(0, 0, 0, 1))
    assert float(default) == pytest.approx(anchors / 4)  # the defaults: LR at t = 1


# LR(-): N is empty. Anchors 0, 1: 3 log(2e + 1) - 2; anchor 2: 3 log(2 + e) - 1; anchor 3: P = {3}
# alone, log(e / e) = 0.
LR_MINUS4 = (2 * (3 * LOG(2 * E + 1) - 2) + 3 * LOG(2 + E) - 1) / 4


def test_lr_minus_removes_every_negative() -> None:
    assert _lr(LRVariant.LR_MINUS, _ids(0, 0, 0, 1)) == pytest.approx(LR_MINUS4)


def test_ir_takes_the_anchors_image_as_its_positives() -> None:
    # Anchors 0, 1: P = {0, 1} (s = 1, 1), N = {2, 3} (s = 0, -1): 2 log(2e + 1 + 1/e) - 2.
    # Anchor 2: P = {2}, N = {0, 1, 3} (s = 0): log(e + 3) - 1. Anchor 3: log(e + 2/e + 1) - 1.
    anchors = 2 * (2 * LOG(2 * E + 1 + 1 / E) - 2) + LOG(E + 3) - 1 + LOG(E + 2 / E + 1) - 1
    assert _lr(LRVariant.IR, _ids(0, 0, 0, 1)) == pytest.approx(anchors / 4)


def test_lr_without_same_or_different_class_negatives() -> None:
    # Lesion B has the other class: -SC keeps it (= LR); -DC drops every negative (= LR(-)).
    different = _ids(0, 0, 0, 1)
    assert _lr(LRVariant.LR_NO_SC, different) == pytest.approx(_lr(LRVariant.LR, different))
    assert _lr(LRVariant.LR_NO_DC, different) == pytest.approx(LR_MINUS4)
    # One class for all: -SC drops the negative and -DC keeps it.
    same = _ids(0, 0, 0, 0)
    assert _lr(LRVariant.LR_NO_SC, same) == pytest.approx(LR_MINUS4)
    assert _lr(LRVariant.LR_NO_DC, same) == pytest.approx(_lr(LRVariant.LR, same))
    # Lesion B without a class is neither: both ablations drop it.
    unknown = _ids(0, 0, 0, -1)
    assert _lr(LRVariant.LR_NO_SC, unknown) == pytest.approx(LR_MINUS4)
    assert _lr(LRVariant.LR_NO_DC, unknown) == pytest.approx(LR_MINUS4)


def test_temperature_divides_the_similarities() -> None:
    # IR at t = 1/2 doubles every logit: anchors 0, 1: 2 log(2e^2 + 1 + e^-2) - 4;
    # anchor 2: log(e^2 + 3) - 2; anchor 3: log(e^2 + 2e^-2 + 1) - 2.
    e2 = E**2
    anchors = 2 * (2 * LOG(2 * e2 + 1 + 1 / e2) - 4) + LOG(e2 + 3) - 2 + LOG(e2 + 2 / e2 + 1) - 2
    assert _lr(LRVariant.IR, _ids(0, 0, 0, 1), temperature=0.5) == pytest.approx(anchors / 4)


def _reference_lr(
    z: npt.NDArray[np.float64],
    lesion: list[int],
    image: list[int],
    cls: list[int],
    variant: LRVariant,
    t: float,
) -> float:
    """Eq. 2 with the header's sets, one anchor at a time."""
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = unit @ unit.T / t
    n, total = len(z), 0.0
    for i in range(n):
        group = image if variant is LRVariant.IR else lesion
        pos = [j for j in range(n) if group[j] == group[i]]
        neg = [k for k in range(n) if group[k] != group[i]]
        known = [k for k in neg if cls[k] >= 0 and cls[i] >= 0]
        if variant is LRVariant.LR_MINUS:
            neg = []
        if variant is LRVariant.LR_NO_SC:
            neg = [k for k in known if cls[k] != cls[i]]
        if variant is LRVariant.LR_NO_DC:
            neg = [k for k in known if cls[k] == cls[i]]
        log_denominator = math.log(sum(math.exp(s[i, k]) for k in pos + neg))
        total -= sum(s[i, j] - log_denominator for j in pos)
    return total / n


@pytest.mark.parametrize("variant", list(LRVariant))
def test_every_variant_matches_a_loop_over_anchors(variant: LRVariant) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(12, 5))
    lesion = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3]
    image = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]
    cls = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, -1, -1]
    got = lesion_recognition_loss(
        torch.tensor(z), _ids(*lesion), _ids(*image), _ids(*cls), variant=variant, temperature=0.3
    )
    assert float(got) == pytest.approx(_reference_lr(z, lesion, image, cls, variant, 0.3))


def test_lr_gradients_are_finite_and_rows_without_positives_add_zero() -> None:
    z = torch.randn(5, 4, requires_grad=True)
    loss = lesion_recognition_loss(z, _ids(0, 0, 1, 2, 3), _ids(0, 1, 2, 3, 4), _ids(0, 0, 1, 1, 0))
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # Explicit masks: only row 0 has a positive (crop 1); rows 1-2 add 0 but count in N_b = 3.
    z3 = _t((1, 0), (1, 0), (0, 1))
    positives = torch.zeros(3, 3, dtype=torch.bool)
    positives[0, 1] = True
    negatives = ~torch.eye(3, dtype=torch.bool) & ~positives
    got = masked_contrastive_loss(z3, positives, negatives, temperature=1.0)
    assert float(got) == pytest.approx(LOG((E + 1) / E) / 3)
    empty = torch.zeros(3, 3, dtype=torch.bool)
    assert float(masked_contrastive_loss(z3, empty, negatives, temperature=1.0)) == 0.0


def test_nt_xent_hand_values() -> None:
    # Pairs agree: anchor's partner s=1, the two others s=0: log(1 + 2/e) for every anchor.
    a = _t((1, 0), (0, 1))
    assert float(nt_xent_loss(a, a.clone(), temperature=1.0)) == pytest.approx(math.log(1 + 2 / E))
    # Pairs swapped: partner s=0, the others s=0 and s=1: log(2 + e) for every anchor.
    b = _t((0, 1), (1, 0))
    assert float(nt_xent_loss(a, b, temperature=1.0)) == pytest.approx(math.log(2 + E))
    # Temperature 0.5 doubles the logits: log(1 + 2 e^-2).
    assert float(nt_xent_loss(a, a.clone(), temperature=0.5)) == pytest.approx(
        math.log(1 + 2 * math.exp(-2))
    )


def test_nt_xent_is_eq_2_with_the_pair_as_the_only_positive() -> None:
    # SimCLR leaves the anchor out of P: one positive per row, so sum = mean over positives.
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    pair = _ids(0, 1, 2, 3, 0, 1, 2, 3)
    others = ~torch.eye(8, dtype=torch.bool)
    same = pair[:, None] == pair[None, :]
    masked = masked_contrastive_loss(torch.cat([a, b]), same & others, ~same, temperature=0.5)
    assert float(nt_xent_loss(a, b, temperature=0.5)) == pytest.approx(float(masked), rel=1e-5)


def test_hard_triplet_hand_value() -> None:
    # 0=(1,0), 1=(0,1) one clip; 2=(1,0) another clip. d01 = 1, d02 = 0, d12 = 1.
    # Anchor 0: max(0, 1 - 0 + 0.5) = 1.5; anchor 1: max(0, 1 - 1 + 0.5) = 0.5; 2 has no positive.
    z = _t((1, 0), (0, 1), (1, 0))
    loss = hard_triplet_loss(z, _ids(0, 0, 1), margin=0.5, k_pos=1, k_neg=1)
    assert float(loss) == pytest.approx(1.0)


def _reference_triplet(
    z: npt.NDArray[np.float64], groups: list[int], margin: float, k_pos: int, k_neg: int
) -> float:
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    d = 1 - unit @ unit.T
    losses = []
    for i in range(len(z)):
        pos = sorted(d[i, j] for j in range(len(z)) if j != i and groups[j] == groups[i])
        neg = sorted(d[i, j] for j in range(len(z)) if groups[j] != groups[i])
        if not pos or not neg:
            continue
        hard_positive = np.mean(pos[::-1][:k_pos])  # the k_pos farthest positives
        losses.append(np.mean([max(0.0, hard_positive - dn + margin) for dn in neg[:k_neg]]))
    return float(np.mean(losses))


@pytest.mark.parametrize(("k_pos", "k_neg"), [(1, 1), (2, 3), (3, 12)])
def test_hard_triplet_matches_a_loop_over_anchors(k_pos: int, k_neg: int) -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(10, 4))
    groups = [0, 0, 0, 0, 1, 1, 1, 2, 2, 3]  # group 3 has no positive: not an anchor
    got = hard_triplet_loss(torch.tensor(z), _ids(*groups), margin=0.5, k_pos=k_pos, k_neg=k_neg)
    assert float(got) == pytest.approx(_reference_triplet(z, groups, 0.5, k_pos, k_neg))


def test_confidence_penalty_hand_values() -> None:
    # Uniform prediction: CE = log 2, H = log 2.
    uniform = confidence_penalty_loss(_t((0.0, 0.0)), _ids(0), alpha=0.3)
    assert float(uniform) == pytest.approx(0.7 * math.log(2))
    # p = (3/4, 1/4), target 1: CE = log 4, H = -(3/4 log 3/4 + 1/4 log 1/4).
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    skewed = confidence_penalty_loss(_t((math.log(3), 0.0)), _ids(1), alpha=0.5)
    assert float(skewed) == pytest.approx(math.log(4) - 0.5 * entropy)
    # alpha = 0 is plain cross-entropy.
    plain = confidence_penalty_loss(_t((math.log(3), 0.0)), _ids(0), alpha=0.0)
    assert float(plain) == pytest.approx(-math.log(0.75))


def test_confidence_penalty_is_shi_eq_3_over_a_batch() -> None:
    # b = 2, alpha = 0.25 (the paper's): p1 = (3/4, 1/4) with target 0, p2 = (1/2, 1/2) with
    # target 1. L = CE - (alpha / b) * (H(p1) + H(p2)).
    logits, target = _t((math.log(3), 0.0), (0.0, 0.0)), _ids(0, 1)
    h1, h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)), math.log(2)
    ce = (-math.log(0.75) + math.log(2)) / 2
    got = confidence_penalty_loss(logits, target, alpha=0.25)
    assert float(got) == pytest.approx(ce - 0.25 / 2 * (h1 + h2))
    # Class weights (this project's addition) weigh the CE only, as in classification_loss.
    weighted = confidence_penalty_loss(logits, target, alpha=0.25, weight=_t((1.0, 2.0))[0])
    ce_w = (-math.log(0.75) + 2 * math.log(2)) / 3
    assert float(weighted) == pytest.approx(ce_w - 0.25 / 2 * (h1 + h2))


def test_cross_entropy_with_class_weights() -> None:
    logits = _t((math.log(3), 0.0), (0.0, 0.0))  # p(0) = 3/4; p = (1/2, 1/2)
    target = _ids(0, 1)
    assert float(classification_loss(logits, target)) == pytest.approx(
        (-math.log(0.75) + math.log(2)) / 2
    )
    weighted = classification_loss(logits, target, weight=_t((1.0, 2.0)).squeeze(0))
    assert float(weighted) == pytest.approx((-math.log(0.75) + 2 * math.log(2)) / 3)


def test_birads_mse() -> None:
    predicted, target = _t((2.0, 4.5, 3.0)).squeeze(0), _t((2.0, 5.0, 5.0)).squeeze(0)
    assert float(birads_regression_loss(predicted, target)) == pytest.approx((0.25 + 4.0) / 3)
