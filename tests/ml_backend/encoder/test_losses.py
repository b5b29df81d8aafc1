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
    nt_xent_loss,
)

E = math.e


def _t(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _ids(*values: int) -> torch.Tensor:
    return torch.tensor(values)


# Four crops: 0 and 1 are two augmentations of image 0, crop 2 is the other view (image 1) of
# the same lesion A, crop 3 is lesion B. Cosines: s01 = 1, s02 = 0, s03 = -1, s12 = 0,
# s13 = -1, s23 = 0. Temperature 1.
Z4 = _t((1, 0), (1, 0), (0, 1), (-1, 0))
LESION4, IMAGE4 = _ids(0, 0, 0, 1), _ids(0, 0, 1, 2)


def _lr(variant: LRVariant, classes: torch.Tensor, temperature: float = 1.0) -> float:
    loss = lesion_recognition_loss(
        Z4, LESION4, IMAGE4, classes, variant=variant, temperature=temperature
    )
    return float(loss)


def test_lr_positives_are_the_other_views_of_the_lesion() -> None:
    # Anchors 0, 1: P = {other aug (s=1), other view (s=0)}, A adds crop 3 (s=-1):
    #   l = log(e + 1 + 1/e) - (1 + 0) / 2.
    # Anchor 2: P = {0, 1} (s=0, 0), A adds crop 3 (s=0): l = log 3. Anchor 3 has no positive.
    d = math.log(E + 1 + 1 / E)
    expected = (2 * (d - 0.5) + math.log(3)) / 3
    assert _lr(LRVariant.LR, _ids(0, 0, 0, 1)) == pytest.approx(expected)


def test_ir_treats_the_other_view_as_a_negative() -> None:
    # Only anchors 0 and 1 have a positive (each other, s=1); negatives: crop 2 (s=0), 3 (s=-1).
    expected = math.log((E + 1 + 1 / E) / E)
    assert _lr(LRVariant.IR, _ids(0, 0, 0, 1)) == pytest.approx(expected)


def test_lr_minus_neither_pulls_nor_pushes_the_other_view() -> None:
    # Anchors 0, 1: P = {each other}, the other view (crop 2) leaves the denominator: log(1+e^-2).
    expected = math.log(1 + math.exp(-2))
    assert _lr(LRVariant.LR_MINUS, _ids(0, 0, 0, 1)) == pytest.approx(expected)


def test_lr_without_same_or_different_class_negatives() -> None:
    # Lesion B has the other class: -SC keeps it (= LR), -DC drops the only negative.
    d_no_neg = math.log(E + 1)  # anchors 0, 1: A = P only
    expected_dc = (2 * (d_no_neg - 0.5) + math.log(2)) / 3  # anchor 2: A = {0, 1}, s = 0
    different = _ids(0, 0, 0, 1)
    assert _lr(LRVariant.LR_NO_SC, different) == pytest.approx(_lr(LRVariant.LR, different))
    assert _lr(LRVariant.LR_NO_DC, different) == pytest.approx(expected_dc)
    # With one class for all, -SC drops the negative and -DC keeps it.
    same = _ids(0, 0, 0, 0)
    assert _lr(LRVariant.LR_NO_SC, same) == pytest.approx(expected_dc)
    assert _lr(LRVariant.LR_NO_DC, same) == pytest.approx(_lr(LRVariant.LR, same))


def test_temperature_divides_the_similarities() -> None:
    t = 0.5  # IR at t: l = log(1 + e^{(0-1)/t} + e^{(-1-1)/t})
    expected = math.log(1 + math.exp(-1 / t) + math.exp(-2 / t))
    assert _lr(LRVariant.IR, _ids(0, 0, 0, 1), temperature=t) == pytest.approx(expected)


def _reference_lr(
    z: npt.NDArray[np.float64],
    lesion: list[int],
    image: list[int],
    cls: list[int],
    variant: LRVariant,
    t: float,
) -> float:
    """The header's definitions as sets, one anchor at a time."""
    unit = z / np.linalg.norm(z, axis=1, keepdims=True)
    s = unit @ unit.T / t
    n, losses = len(z), []
    for i in range(n):
        if variant in (LRVariant.IR, LRVariant.LR_MINUS):
            pos = [j for j in range(n) if j != i and image[j] == image[i]]
        else:
            pos = [j for j in range(n) if j != i and lesion[j] == lesion[i]]
        if variant is LRVariant.IR:
            neg = [j for j in range(n) if image[j] != image[i]]
        else:
            neg = [j for j in range(n) if lesion[j] != lesion[i]]
        if variant is LRVariant.LR_NO_SC:
            neg = [j for j in neg if cls[j] != cls[i]]
        if variant is LRVariant.LR_NO_DC:
            neg = [j for j in neg if cls[j] == cls[i]]
        if not pos:
            continue
        log_denominator = math.log(sum(math.exp(s[i, a]) for a in pos + neg))
        losses.append(-sum(s[i, p] - log_denominator for p in pos) / len(pos))
    return float(np.mean(losses))


@pytest.mark.parametrize("variant", list(LRVariant))
def test_every_variant_matches_a_loop_over_anchors(variant: LRVariant) -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(12, 5))
    lesion = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3]
    image = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]
    cls = [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1]
    got = lesion_recognition_loss(
        torch.tensor(z), _ids(*lesion), _ids(*image), _ids(*cls), variant=variant, temperature=0.3
    )
    assert float(got) == pytest.approx(_reference_lr(z, lesion, image, cls, variant, 0.3))


def test_lr_gradients_are_finite_with_anchors_without_positives() -> None:
    z = torch.randn(5, 4, requires_grad=True)
    loss = lesion_recognition_loss(z, _ids(0, 0, 1, 2, 3), _ids(0, 1, 2, 3, 4), _ids(0, 0, 1, 1, 0))
    (grad,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    singles = _ids(0, 1, 2, 3, 4)
    alone = lesion_recognition_loss(z, singles, singles, _ids(0, 0, 0, 0, 0))
    assert float(alone.detach()) == 0.0  # no positive pair at all


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


def test_nt_xent_is_instance_recognition_with_two_views() -> None:
    a, b = torch.randn(4, 6), torch.randn(4, 6)
    pair = _ids(0, 1, 2, 3, 0, 1, 2, 3)
    ir = lesion_recognition_loss(
        torch.cat([a, b]), pair, pair, pair, variant=LRVariant.IR, temperature=0.5
    )
    assert float(nt_xent_loss(a, b, temperature=0.5)) == pytest.approx(float(ir), rel=1e-5)


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
