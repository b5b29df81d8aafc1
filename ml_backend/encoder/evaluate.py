"""Score an encoder on a held-out fold: the classification table and the retrieval table.

Classification is per image (classification.py), with MCR over the fold's multi-view lesions.
Retrieval ranks a gallery by cosine similarity for each query image of the fold; an item is
relevant when it has the query's pathology. The gallery is the fold itself (its other images)
plus, when given, a reference set such as the training lesions: what a reader's "similar
lesions" grid searches. Same-patient galleries hold only the fold's own images, since folds
are patient-disjoint. One more row, "other view", asks whether the nearest image is the
query's other view of the same lesion (P@1 on lesion identity, all patients): what the LR
loss trains for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader

from core.results import EncoderScores, Estimate, RetrievalRow
from ml_backend.encoder.classification import ClassificationScores, classification_scores
from ml_backend.encoder.data import LesionCropDataset, LesionSample
from ml_backend.encoder.model import LesionEncoder
from ml_backend.encoder.retrieval import (
    RetrievalScores,
    Setting,
    cosine_similarity,
    gallery_mask,
    ranked_scores,
)
from ml_backend.encoder.targets import MALIGNANT
from ml_backend.encoder.train import amp_dtype

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Embedded:
    embeddings: npt.NDArray[np.float32]  # N x D, unit norm
    malignant_prob: FloatArray  # N
    birads: FloatArray | None  # N BI-RADS scores, None without the head


@torch.inference_mode()
def embed(model: LesionEncoder, dataset: LesionCropDataset, *, batch_size: int = 64) -> Embedded:
    """Every crop of an (unaugmented) dataset through the model, in batches."""
    if dataset.augment:
        raise ValueError("embed an unaugmented dataset: augment=False")
    device = next(model.parameters()).device
    dtype = amp_dtype(device)
    model.eval()
    chunks: list[list[torch.Tensor]] = [[], [], []]
    for crops, *_ in DataLoader(dataset, batch_size=batch_size):
        crops = crops.to(device)
        if device.type == "cuda":
            crops = crops.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(crops)
        chunks[0].append(out.embedding.float().cpu())
        chunks[1].append(out.logits.float().softmax(dim=1)[:, MALIGNANT].cpu())
        if out.birads is not None:
            chunks[2].append(out.birads.float().cpu())
    z = torch.cat(chunks[0]) if chunks[0] else torch.zeros(0, 0)
    prob = torch.cat(chunks[1]) if chunks[1] else torch.zeros(0)
    birads = torch.cat(chunks[2]).double().numpy() if chunks[2] else None
    return Embedded(z.numpy().astype(np.float32), prob.double().numpy(), birads)


def classification(
    samples: Sequence[LesionSample], malignant_prob: Sequence[float], *, threshold: float = 0.5
) -> ClassificationScores:
    """Per-image metrics over the samples with a pathology; MCR over their lesions."""
    keep = [i for i, s in enumerate(samples) if s.pathology is not None]
    return classification_scores(
        [int(samples[i].pathology or 0) for i in keep],
        [float(malignant_prob[i]) for i in keep],
        [samples[i].lesion_key for i in keep],
        threshold=threshold,
    )


def retrieval_against(
    query: tuple[npt.ArrayLike, Sequence[object], Sequence[object]],
    gallery: tuple[npt.ArrayLike, Sequence[object], Sequence[object]] | None,
    setting: Setting,
) -> RetrievalScores:
    """retrieval.py's definitions with the queries' own rows plus an extra gallery.

    `query` and `gallery` are (embeddings, labels, patient keys). Every query row ranks the
    other query rows and the gallery rows allowed by `setting` (retrieval.py's header).
    """
    z, labels, patients = query
    n = len(labels)
    if gallery is not None and len(gallery[1]):
        z = np.concatenate([np.asarray(z), np.asarray(gallery[0])])
        labels, patients = [*labels, *gallery[1]], [*patients, *gallery[2]]
    sim = cosine_similarity(z)[:n] if n else np.zeros((0, 0))
    allowed = gallery_mask(np.asarray(patients, dtype=object), setting)[:n]
    return ranked_scores(sim, allowed, np.asarray(labels, dtype=object), setting)


Keyed = tuple[npt.NDArray[np.float32], list[object], list[object]]


def keyed(samples: Sequence[LesionSample], z: npt.NDArray[np.float32], *, by: str) -> Keyed:
    """(embeddings, labels, patients) for retrieval: `by` "pathology" or "lesion".

    By pathology, samples without one are left out (they can be neither right nor wrong).
    """
    if by == "lesion":
        return z, [s.lesion_key for s in samples], [s.patient_key for s in samples]
    keep = [i for i, s in enumerate(samples) if s.pathology is not None]
    return (
        z[keep],
        [samples[i].pathology for i in keep],
        [samples[i].patient_key for i in keep],
    )


@dataclass(frozen=True)
class EncoderReport:
    classification: ClassificationScores
    retrieval: tuple[RetrievalScores, ...]  # all, same-patient, cross-patient (pathology)
    other_view: RetrievalScores  # lesion identity, all patients
    n_gallery: int  # extra gallery images beyond the fold's own

    def metrics(self) -> EncoderScores:
        """What the encoder version records: scalars for the tables, Wilson CIs beside
        ACC/SEN/SPE."""
        c = self.classification

        def ci(estimate: Estimate | None) -> tuple[float, float] | None:
            return (estimate.ci_low, estimate.ci_high) if estimate else None

        return EncoderScores(
            auc=c.auc,
            precision=c.precision,
            f1=c.f1,
            mcr=c.mcr,
            acc=c.acc.value if c.acc else None,
            acc_ci=ci(c.acc),
            sen=c.sen.value if c.sen else None,
            sen_ci=ci(c.sen),
            spe=c.spe.value if c.spe else None,
            spe_ci=ci(c.spe),
            n_images=c.n_images,
            n_multiview_lesions=c.n_multiview_lesions,
            retrieval={r.setting.value: _row(r) for r in self.retrieval},
            other_view=_row(self.other_view),
            n_gallery=self.n_gallery,
        )


def _row(scores: RetrievalScores) -> RetrievalRow:
    row = asdict(scores)
    row.pop("setting")
    return RetrievalRow.model_validate(row)


def evaluate_fold(
    model: LesionEncoder,
    test: LesionCropDataset,
    gallery: LesionCropDataset | None = None,
    *,
    batch_size: int = 64,
) -> EncoderReport:
    """The classification and retrieval tables for `test`, searching `gallery` too."""
    t = embed(model, test, batch_size=batch_size)
    g = embed(model, gallery, batch_size=batch_size) if gallery is not None else None

    def extra(by: str) -> Keyed | None:
        return keyed(gallery.samples, g.embeddings, by=by) if gallery and g else None

    by_class = keyed(test.samples, t.embeddings, by="pathology")
    return EncoderReport(
        classification=classification(test.samples, list(t.malignant_prob)),
        retrieval=tuple(retrieval_against(by_class, extra("pathology"), s) for s in Setting),
        other_view=retrieval_against(
            keyed(test.samples, t.embeddings, by="lesion"), extra("lesion"), Setting.ALL
        ),
        n_gallery=len(gallery) if gallery is not None else 0,
    )
