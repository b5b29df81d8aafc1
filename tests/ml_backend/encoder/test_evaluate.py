"""Encoder evaluation: embedding in batches, tables on constructed embeddings and a real fold."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.data import LesionCropDataset, LesionSample
from ml_backend.encoder.evaluate import (
    classification,
    embed,
    evaluate_fold,
    keyed,
    retrieval_against,
)
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.retrieval import Setting, retrieval_scores
from tests.ml_backend.encoder.busbra_mini import HOME, mini_samples

SIZE = 64


@pytest.fixture(scope="module")
def dataset() -> LesionCropDataset:
    return LesionCropDataset.load(mini_samples(), HOME, size=SIZE, margin=0.1, augment=False)


@pytest.fixture(scope="module")
def model() -> LesionEncoder:
    torch.manual_seed(0)
    return LesionEncoder(EncoderConfig(crop_size=SIZE, birads_head=True)).eval()


def test_embed_is_unit_norm_and_independent_of_the_batch_size(
    model: LesionEncoder, dataset: LesionCropDataset
) -> None:
    part = dataset.subset(range(10), augment=False)
    big, small = embed(model, part, batch_size=64), embed(model, part, batch_size=3)
    assert big.embeddings.shape == (10, 512) and big.birads is not None
    np.testing.assert_allclose(np.linalg.norm(big.embeddings, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(big.embeddings, small.embeddings, atol=1e-5)
    np.testing.assert_allclose(big.malignant_prob, small.malignant_prob, atol=1e-6)
    assert ((big.malignant_prob >= 0) & (big.malignant_prob <= 1)).all()
    with pytest.raises(ValueError, match="unaugmented"):
        embed(model, dataset.subset([0], augment=True))


def test_retrieval_without_a_gallery_is_retrievals_own_definition() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(12, 3))
    labels = [0, 1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0]
    patients = ["a", "a", "b", "b", "c", "d", "d", "e", "f", "f", "g", "h"]
    for setting in Setting:
        assert retrieval_against((z, labels, patients), None, setting) == retrieval_scores(
            z, labels, patients, setting
        )


def test_retrieval_against_a_gallery_by_hand() -> None:
    """Queries q0 = (1, 0) label 0 and q1 = (0.6, 0.8) label 1, both of patient p; gallery
    g0 = (0.8, 0.6) label 0, g1 = (-1, 0) label 0, g2 = (0, 1) label 1, other patients.

    q0 cosines: g0 0.8, q1 0.6, g2 0, g1 -1; relevant g0 and g1 -> ranks 1 and 4:
      all AP@10 = (1/1 + 2/4) / 2 = 0.75, P@1 = 1, P@10 = 2/4 (gallery of 4);
      cross (no q1): ranks 1 and 3, AP = (1 + 2/3) / 2.
    q1 cosines: g0 0.96, g2 0.8, q0 0.6, g1 -0.6; relevant g2 only -> rank 2:
      all AP = (1/2) / 1, P@1 = 0, P@10 = 1/4; cross: rank 2 as well, AP = 1/2.
    Same patient: each query's gallery is the other query, of the other label: no answer.
    """
    query = (np.array([[1.0, 0.0], [0.6, 0.8]]), [0, 1], ["p", "p"])
    gallery = (np.array([[0.8, 0.6], [-1.0, 0.0], [0.0, 1.0]]), [0, 0, 1], ["x", "y", "z"])
    everything = retrieval_against(query, gallery, Setting.ALL)
    assert everything.map_at_10 == pytest.approx((0.75 + 0.5) / 2)
    assert everything.precision_at_1 == 0.5
    assert everything.precision_at_10 == pytest.approx((2 / 4 + 1 / 4) / 2)
    cross = retrieval_against(query, gallery, Setting.CROSS_PATIENT)
    assert cross.map_at_10 == pytest.approx(((1 + 2 / 3) / 2 + 0.5) / 2)
    same = retrieval_against(query, gallery, Setting.SAME_PATIENT)
    assert (same.n_queries, same.n_skipped, same.map_at_10) == (0, 2, None)


def _sample(i: int, lesion: str, pathology: int | None) -> LesionSample:
    base = mini_samples()[0]
    return replace(base, image_id=i, lesion_key=lesion, patient_key=lesion, pathology=pathology)


def test_classification_skips_unknown_pathology_and_counts_inconsistent_lesions() -> None:
    samples = [
        _sample(0, "a", 1),
        _sample(1, "a", 1),  # views of a: 0.9 and 0.2 disagree
        _sample(2, "b", 0),
        _sample(3, "b", 0),  # both benign predictions: consistent
        _sample(4, "c", None),  # no pathology: not scored
    ]
    scores = classification(samples, [0.9, 0.2, 0.1, 0.4, 0.99])
    assert scores.n_images == 4 and scores.n_multiview_lesions == 2
    assert scores.mcr == 0.5 and scores.auc == pytest.approx(0.75)
    assert scores.sen is not None and scores.sen.value == 0.5
    z = np.eye(5, dtype=np.float32)
    _, labels, patients = keyed(samples, z, by="pathology")
    assert labels == [1, 1, 0, 0] and patients == ["a", "a", "b", "b"]


def test_a_real_fold_scores_every_image_and_finds_its_other_view(
    model: LesionEncoder, dataset: LesionCropDataset
) -> None:
    """BUS-BRA has one lesion per patient, so a same-patient gallery holds only the other
    view, which shares the pathology: P@1 and mAP@10 are 1 whatever the model."""
    test = [i for i, s in enumerate(dataset.samples) if s.fold == 1]
    rest = [i for i, s in enumerate(dataset.samples) if s.fold != 1]
    report = evaluate_fold(
        model, dataset.subset(test, augment=False), dataset.subset(rest, augment=False)
    )
    metrics = report.metrics()
    samples = [dataset.samples[i] for i in test]
    two_views = [s for s in samples if sum(t.lesion_key == s.lesion_key for t in samples) == 2]
    assert metrics.n_images == len(test) == 14 and metrics.n_gallery == len(rest)
    same = metrics.retrieval["same-patient"]
    assert (same.map_at_10, same.precision_at_1) == (1.0, 1.0)
    assert same.n_queries == len(two_views) == metrics.n_multiview_lesions * 2
    assert metrics.other_view.n_queries == len(two_views)
    assert metrics.retrieval["all"].n_queries == len(test)
    assert metrics.auc is not None and 0.0 <= metrics.auc <= 1.0
    assert metrics.acc_ci is not None and metrics.acc is not None
    assert metrics.acc_ci[0] <= metrics.acc
    assert set(metrics.retrieval) == {"all", "same-patient", "cross-patient"}
