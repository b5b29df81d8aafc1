"""Encoder losses, one function each. Embeddings are compared by cosine similarity.

References and the exact definitions implemented:

- Cross-entropy: the benign/malignant task (Guo et al.'s baseline), optional class weights.
- Lesion recognition (LR; Guo et al., "Self Supervised Lesion Recognition For Breast Ultrasound
  Diagnosis", arXiv 2204.08477, eq. 2-4 and Table 2), implemented as written:
      L_con = -1/N_b sum_i sum_{j in P(i)} log( e^{S_ij / t} / sum_{k in P(i) u N(i)} e^{S_ik / t} )
  S is the cosine similarity and the paper has no temperature: t = 1 by default (t is kept as a
  knob). The positives are summed, not averaged (no 1/|P(i)|, unlike Khosla et al.), and the
  sum over anchors is divided by the batch size N_b. Eq. 3's P(i) = {j | L(j) = L(i)} holds the
  anchor itself (S_ii = 1 in the numerator and the denominator); that self term gives IR a loss
  with one view per image and makes LR(-) pull the views towards the anchor rather than only
  even out their similarities. Eq. 4 adds alpha * L_con to the CE, in the caller (the paper
  gives no alpha).
    LR       P = every crop of the anchor's lesion; N = every crop of another lesion (eq. 3).
    LR(-SC)  N drops the other lesions of the anchor's class (Table 2).
    LR(-DC)  N drops the other lesions of the other class (Table 2).
    LR(-)    N is empty: all negatives removed (Table 2); P as in LR.
    IR       instance recognition: P = the crops of the anchor's image (its augmentations),
             N = every other crop, other views of its lesion included. The paper's eq. 5 is
             not in the text we have; this is eq. 3 with image indices for lesion indices.
  A crop without a class (-1) is neither same- nor different-class: LR(-SC) and LR(-DC) keep
  only negatives whose class relation to the anchor is known (the paper's data are all labeled).
- Entropy regulariser (Shi et al., BreastNet, eq. 1-3): the confidence penalty
  CE(y, p) - (alpha / b) * sum_n H(p_n) = CE - alpha * mean H, H(p) = -sum_c p_c log p_c
  (minus: higher entropy lowers the loss; the paper's alpha is 0.25); and the auxiliary BI-RADS
  regression, the MSE mean((z - z_hat)^2) against the mean of each category's ACR likelihood of
  malignancy (targets.birads_score). Eq. 1 adds the MSE with weight 1 and eq. 3 subtracts the
  entropy from that multi-task sum; the caller (train.batch_loss) adds the terms.
- SimCLR NT-Xent (Chen et al. 2020): 2N crops, each anchor's one positive is its pair,
  l_i = -log( exp(s_ij / t) / sum_{k != i} exp(s_ik / t) ), mean over the 2N anchors.
- Hard triplet loss (Tang et al., arXiv 2408.10600; distance d = 1 - cosine, as in the
  authors' released code): per anchor, the mean distance of its k_pos farthest positives
  against each of its k_neg nearest negatives,
      l_i = mean_{n in hardest k_neg negatives} max(0, mean(k_pos hardest d_ip) - d_in + margin)
  averaged over anchors with a positive and a negative. Groups are clips (video frames) or
  lesions. Defaults k_pos=3, k_neg=12, margin=0.5 are the authors' code defaults.
"""

from __future__ import annotations

from enum import StrEnum

import torch
import torch.nn.functional as F


class LRVariant(StrEnum):
    LR = "LR"
    LR_MINUS = "LR(-)"
    LR_NO_SC = "LR(-SC)"
    LR_NO_DC = "LR(-DC)"
    IR = "IR"


def classification_loss(
    logits: torch.Tensor, target: torch.Tensor, *, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy; `weight` per class counters BUS-BRA's 2:1 benign:malignant imbalance."""
    return F.cross_entropy(logits, target, weight=weight)


def _cosine(z: torch.Tensor) -> torch.Tensor:
    unit = F.normalize(z, dim=1)
    return unit @ unit.T


def _pairs(ids: torch.Tensor) -> torch.Tensor:
    return ids[:, None] == ids[None, :]


def lr_masks(
    lesion_ids: torch.Tensor,
    image_ids: torch.Tensor,
    classes: torch.Tensor,
    variant: LRVariant,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, N) of eq. 3 / Table 2 as N x N boolean masks; P holds the diagonal (the anchor)."""
    lesion, image = _pairs(lesion_ids), _pairs(image_ids)
    if variant is LRVariant.IR:
        return image, ~image
    negatives = ~lesion
    known = (classes[:, None] >= 0) & (classes[None, :] >= 0)  # -1: no class, no relation
    same_class = _pairs(classes) & known
    if variant is LRVariant.LR_MINUS:
        negatives = torch.zeros_like(lesion)
    elif variant is LRVariant.LR_NO_SC:
        negatives = negatives & known & ~same_class
    elif variant is LRVariant.LR_NO_DC:
        negatives = negatives & same_class
    return lesion, negatives


def masked_contrastive_loss(
    z: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """Guo et al.'s eq. 2 (header) with explicit P and N masks: the positives' -log softmax over
    P u N, summed over each anchor's positives, the sum over anchors divided by N_b = len(z).

    A row without a positive adds 0 (it still counts in N_b) and is left out of the softmax, so
    no denominator is empty (an empty one would give 0 * nan gradients).
    """
    n_pos = positives.sum(dim=1)
    anchors = n_pos > 0
    if not anchors.any():
        return z.sum() * 0.0  # no positive pair in the batch: zero, but keeps the graph
    logits = (_cosine(z) / temperature)[anchors]
    pos, kept = positives[anchors], (positives | negatives)[anchors]
    denominator = torch.logsumexp(logits.masked_fill(~kept, -torch.inf), dim=1)
    log_prob = torch.where(pos, logits - denominator[:, None], 0.0)
    return -log_prob.sum() / len(z)


def lesion_recognition_loss(
    z: torch.Tensor,
    lesion_ids: torch.Tensor,
    image_ids: torch.Tensor,
    classes: torch.Tensor,
    *,
    variant: LRVariant = LRVariant.LR,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Guo et al.'s L_con for LR or a Table 2 ablation (header); ids and classes are N ints.

    temperature 1 is the paper's plain cosine; other values are this project's knob.
    """
    positives, negatives = lr_masks(lesion_ids, image_ids, classes, variant)
    return masked_contrastive_loss(z, positives, negatives, temperature=temperature)


def confidence_penalty_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    alpha: float,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Shi et al.'s eq. 3: CE - (alpha / b) * sum of the b predictions' entropies.

    Penalises over-confident outputs on small data. `weight` (per class, as in
    classification_loss) is this project's addition; the paper's CE is unweighted (None).
    """
    log_p = F.log_softmax(logits, dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    return F.nll_loss(log_p, target, weight=weight) - alpha * entropy


def birads_regression_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Shi et al.'s eq. 1 regression term: MSE against targets.birads_score (likelihood 0..1)."""
    return F.mse_loss(predicted, target)


def nt_xent_loss(a: torch.Tensor, b: torch.Tensor, *, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent: row i of `a` and row i of `b` are two views of one image."""
    n = len(a)
    logits = _cosine(torch.cat([a, b])) / temperature
    eye = torch.eye(2 * n, dtype=torch.bool, device=a.device)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(a.device)
    return F.cross_entropy(logits.masked_fill(eye, -torch.inf), partner)


def hard_triplet_loss(
    z: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    margin: float = 0.5,
    k_pos: int = 3,
    k_neg: int = 12,
) -> torch.Tensor:
    """Tang et al.'s hard triplet loss (header): farthest positives' mean vs nearest negatives."""
    distance = 1.0 - _cosine(z)
    same = _pairs(group_ids)
    positives = same & ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    negatives = ~same
    top_p = distance.masked_fill(~positives, -torch.inf).topk(min(k_pos, len(z)), dim=1).values
    valid_p = torch.isfinite(top_p)
    mean_p = torch.where(valid_p, top_p, 0.0).sum(dim=1) / valid_p.sum(dim=1).clamp(min=1)
    near_n = distance.masked_fill(~negatives, torch.inf)
    top_n = near_n.topk(min(k_neg, len(z)), dim=1, largest=False).values
    valid_n = torch.isfinite(top_n)
    hinge = torch.where(valid_n, F.relu(mean_p[:, None] - top_n + margin), 0.0)
    anchors = positives.any(dim=1) & negatives.any(dim=1)
    if not anchors.any():
        return z.sum() * 0.0
    per_anchor = hinge.sum(dim=1) / valid_n.sum(dim=1).clamp(min=1)
    return per_anchor[anchors].mean()
