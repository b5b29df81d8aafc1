"""Encoder losses, one function each. Embeddings are compared by cosine similarity.

References and the exact definitions implemented:

- Cross-entropy: the benign/malignant task (Guo et al.'s baseline), optional class weights.
- Lesion recognition (LR; Guo et al., "Self Supervised Lesion Recognition For Breast Ultrasound
  Diagnosis", arXiv 2204.08477, eq. 2-3): a supervised contrastive loss whose labels are lesion
  identities. Per anchor i with positives P(i) and kept negatives N(i), A(i) = P(i) u N(i):
      l_i = -1/|P(i)| * sum_{p in P(i)} log( exp(s_ip / t) / sum_{a in A(i)} exp(s_ia / t) )
  averaged over anchors with at least one positive (eq. 3 adds it to the CE with a weight; the
  caller does that sum). Only the abstract of the paper was reachable from here, so the
  ablations follow their names and this reading; check them against the PDF before publishing
  a table:
    LR       P = other crops of the same lesion (other views and augmentations);
             N = every crop of another lesion.
    LR(-SC)  LR without same-class negatives: N drops other lesions of the anchor's class.
    LR(-DC)  LR without different-class negatives: N keeps only the anchor's class.
    LR(-)    positives are only the anchor image's own augmentations; the other views of its
             lesion are neither pulled nor pushed (left out of A): the step between IR and LR.
    IR       instance recognition: P = the anchor image's own augmentations; every other crop,
             other views of the same lesion included, is a negative (multi-positive SimCLR).
- Entropy regulariser (Shi et al., BreastNet, eq. 1-3): the confidence penalty
  CE(y, p) - alpha * H(p), H(p) = -sum_c p_c log p_c, averaged over the batch; and the auxiliary
  BI-RADS regression mean((r_hat - r)^2). The total (eq. 3) is their weighted sum, in the caller.
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
    """(positives, kept negatives) as N x N boolean masks, the diagonal always excluded."""
    others = ~torch.eye(len(lesion_ids), dtype=torch.bool, device=lesion_ids.device)
    lesion, image, same_class = _pairs(lesion_ids), _pairs(image_ids), _pairs(classes)
    if variant is LRVariant.IR:
        return image & others, ~image
    if variant is LRVariant.LR_MINUS:
        return image & others, ~lesion
    negatives = ~lesion
    if variant is LRVariant.LR_NO_SC:
        negatives = negatives & ~same_class
    elif variant is LRVariant.LR_NO_DC:
        negatives = negatives & same_class
    return lesion & others, negatives


def masked_contrastive_loss(
    z: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, *, temperature: float
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al.'s L_out) with explicit masks; see the header.

    Both masks must be False on the diagonal. Only anchors with a positive enter, so no
    denominator is empty (an empty one would give 0 * nan gradients).
    """
    n_pos = positives.sum(dim=1)
    anchors = n_pos > 0
    if not anchors.any():
        return z.sum() * 0.0  # no positive pair in the batch: zero, but keeps the graph
    logits = (_cosine(z) / temperature)[anchors]
    pos, kept = positives[anchors], (positives | negatives)[anchors]
    denominator = torch.logsumexp(logits.masked_fill(~kept, -torch.inf), dim=1)
    log_prob = torch.where(pos, logits - denominator[:, None], 0.0)
    return (-log_prob.sum(dim=1) / n_pos[anchors]).mean()


def lesion_recognition_loss(
    z: torch.Tensor,
    lesion_ids: torch.Tensor,
    image_ids: torch.Tensor,
    classes: torch.Tensor,
    *,
    variant: LRVariant = LRVariant.LR,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Guo et al.'s LR loss or one of its ablations (header); ids and classes are N ints."""
    positives, negatives = lr_masks(lesion_ids, image_ids, classes, variant)
    return masked_contrastive_loss(z, positives, negatives, temperature=temperature)


def confidence_penalty_loss(
    logits: torch.Tensor, target: torch.Tensor, *, alpha: float
) -> torch.Tensor:
    """CE - alpha * mean prediction entropy: penalises over-confident outputs on small data."""
    log_p = F.log_softmax(logits, dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    return F.nll_loss(log_p, target) - alpha * entropy


def birads_regression_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the BI-RADS score (targets from targets.birads_score)."""
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
