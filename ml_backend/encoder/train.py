"""Train the lesion encoder on P lesions x K views batches, one loss recipe per method.

    baseline     cross-entropy (benign/malignant)
    lr           CE + lambda * lesion recognition (Guo et al., eq. 4)
    ir           CE + lambda * instance recognition (Guo et al.'s comparison)
    lr_entropy   confidence penalty (CE - alpha * entropy; Shi et al., eq. 3) + lambda * LR
Every method adds Shi et al.'s BI-RADS MSE when the model has the BI-RADS head (eq. 1, weight 1
by default); with lr_entropy the entropy is thus subtracted from the multi-task loss, as in E-DMTL.

The loop is the shared engine's (ml_backend/training/engine.py: linear warmup then cosine decay
to 5%, channels_last on CUDA, clipping, the NaN stop); the encoder picks AMP in bf16 where the GPU
has it, else fp16 with a scaler, fp32 on CPU. The run is deterministic for a seed: model init,
batch order and augmentations all derive from it. Encoder runs are minutes, not hours, so there is
no checkpoint/resume: an interrupted run starts again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.data import LesionCropDataset, augment_batch
from ml_backend.encoder.losses import (
    LRVariant,
    birads_regression_loss,
    classification_loss,
    confidence_penalty_loss,
    lesion_recognition_loss,
)
from ml_backend.encoder.model import N_CLASSES, EncoderOutput, LesionEncoder
from ml_backend.encoder.sampler import LesionBatchSampler
from ml_backend.training.distributed import SINGLE, World
from ml_backend.training.engine import Engine, FitConfig, Schedule
from ml_backend.training.hooks import TrainHooks

Method = Literal["baseline", "lr", "ir", "lr_entropy"]
METHODS: tuple[Method, ...] = ("baseline", "lr", "ir", "lr_entropy")
# the contrastive term of each method, and whether CE becomes the confidence penalty
_RECIPES: dict[Method, tuple[LRVariant | None, bool]] = {
    "baseline": (None, False),
    "lr": (LRVariant.LR, False),
    "ir": (LRVariant.IR, False),
    "lr_entropy": (LRVariant.LR, True),
}


class EncoderTrainConfig(BaseModel):
    """One training run; the defaults are Guo et al.'s 8 x 8 batches and plain cosine (t = 1),
    Shi et al.'s alpha = 0.25 and unweighted BI-RADS MSE."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    method: Method = "lr"
    epochs: int = Field(30, ge=1)  # an epoch draws every training lesion once
    lesions_per_batch: int = Field(8, ge=2)
    views_per_lesion: int = Field(8, ge=1)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    warmup_iters: int = Field(100, ge=0)  # at most a fifth of the run
    temperature: float = Field(1.0, gt=0)  # Guo et al.'s S is the plain cosine
    lr_weight: float = Field(1.0, ge=0)  # lambda (Guo's alpha, eq. 4; no value in the paper)
    lr_variant: LRVariant | None = None  # an ablation instead of the method's own term
    entropy_alpha: float = Field(0.25, ge=0)  # Shi et al.'s alpha (eq. 3, Table 1)
    birads_weight: float = Field(1.0, ge=0)  # Shi et al.'s eq. 1 adds the MSE unweighted
    balanced_classes: bool = False  # CE class weights from the training-set class counts
    grad_clip: float = Field(5.0, gt=0)
    seed: int = 0

    def variant(self) -> LRVariant | None:
        default, _ = _RECIPES[self.method]
        return self.lr_variant if default is not None and self.lr_variant else default


class BatchTargets(NamedTuple):
    lesions: torch.Tensor  # N ints
    instances: torch.Tensor  # N ints: one per sample, shared by its augmentations
    classes: torch.Tensor  # N ints, -1 without pathology
    birads: torch.Tensor  # N floats, nan without a category


_Batch = tuple[torch.Tensor, BatchTargets]  # augmented crops and their targets


@dataclass(frozen=True)
class EncoderTrainResult:
    model: LesionEncoder  # in eval mode
    losses: list[float]  # mean total loss per epoch
    parts: list[dict[str, float]]  # mean of each weighted term per epoch ("ce", "lr", "birads")
    seconds: float


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on GPUs that have it (no loss scaling), fp16 on older ones, none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def batch_loss(
    out: EncoderOutput,
    targets: BatchTargets,
    config: EncoderTrainConfig,
    class_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The method's weighted loss terms for one batch, computed in fp32."""
    _, entropy = _RECIPES[config.method]
    variant = config.variant()
    logits, labeled = out.logits.float(), targets.classes >= 0
    terms: dict[str, torch.Tensor] = {"ce": logits.sum() * 0.0}
    if labeled.any():
        x, y = logits[labeled], targets.classes[labeled]
        if entropy:
            alpha = config.entropy_alpha
            terms["ce"] = confidence_penalty_loss(x, y, alpha=alpha, weight=class_weight)
        else:
            terms["ce"] = classification_loss(x, y, weight=class_weight)
    if variant is not None:
        contrastive = lesion_recognition_loss(
            out.embedding.float(),
            targets.lesions,
            targets.instances,
            targets.classes,
            variant=variant,
            temperature=config.temperature,
        )
        terms["lr"] = config.lr_weight * contrastive
    known = torch.isfinite(targets.birads)
    if out.birads is not None and known.any():
        mse = birads_regression_loss(out.birads.float()[known], targets.birads[known])
        terms["birads"] = config.birads_weight * mse
    return terms


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weight matrices and kernels only, not on norms, biases or GeM's p."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def make_optimizer(model: torch.nn.Module, config: EncoderTrainConfig) -> torch.optim.Optimizer:
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def class_weights(dataset: LesionCropDataset) -> torch.Tensor:
    """Inverse class frequency, normalised to mean 1 (unlabeled samples do not count)."""
    counts = torch.zeros(N_CLASSES)
    for sample in dataset.samples:
        if sample.pathology is not None:
            counts[sample.pathology] += 1
    weights = counts.sum() / (N_CLASSES * counts.clamp(min=1))
    return weights


def make_sampler(dataset: LesionCropDataset, config: EncoderTrainConfig) -> LesionBatchSampler:
    """P x K batches; P shrinks to the number of lesions of a small training set."""
    return LesionBatchSampler(
        dataset.lesions,
        lesions_per_batch=min(config.lesions_per_batch, len(set(dataset.lesions))),
        views_per_lesion=config.views_per_lesion,
        seed=config.seed,
    )


def dataset_targets(dataset: LesionCropDataset, device: torch.device) -> BatchTargets:
    """Every sample's targets as tensors on `device`; a batch indexes them."""
    items = [dataset.targets(i) for i in range(len(dataset))]
    lesions, instances, classes, scores = zip(*items, strict=True)
    return BatchTargets(
        torch.tensor(lesions, device=device),
        torch.tensor(instances, device=device),
        torch.tensor(classes, device=device),
        torch.tensor(scores, dtype=torch.float32, device=device),
    )


class EncoderTask:
    """The encoder's part of a run: P x K batches augmented on the device, the method's terms."""

    def __init__(
        self,
        model: LesionEncoder,
        dataset: LesionCropDataset,
        config: EncoderTrainConfig,
        world: World = SINGLE,
    ) -> None:
        self.model, self.dataset, self.config, self.world = model, dataset, config, world
        self.device = next(model.parameters()).device
        self.sampler = make_sampler(dataset, config)
        self.lesions_here = world.share(self.sampler.p)  # this process's lesions of a batch
        self.contexts = dataset.stacked(self.device)
        self.targets = dataset_targets(dataset, self.device)
        self.generator = torch.Generator().manual_seed(config.seed)  # augmentation draws
        weights = class_weights(dataset).to(self.device) if config.balanced_classes else None
        self.class_weight = weights

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler)

    def optimizer(self) -> torch.optim.Optimizer:
        return make_optimizer(self.model, self.config)

    def batches(self, epoch: int) -> Iterator[tuple[_Batch, int]]:
        self.sampler.set_epoch(epoch + 1)
        k = self.sampler.k
        for whole in self.sampler:
            start = self.world.rank * self.lesions_here * k  # whole lesions: K views each
            batch = whole[start : start + self.lesions_here * k]
            index = torch.tensor(batch, device=self.device)
            crops = augment_batch(self.contexts[index], self.dataset.size, generator=self.generator)
            crops = crops.expand(-1, 3, -1, -1) if crops.shape[1] == 1 else crops
            yield (crops, BatchTargets(*(t[index] for t in self.targets))), len(batch)

    def forward(self, model: nn.Module, batch: _Batch) -> EncoderOutput:
        crops, _ = batch
        if self.device.type == "cuda":
            crops = crops.contiguous(memory_format=torch.channels_last)
        out: EncoderOutput = model(crops)
        return out

    def losses(self, out: EncoderOutput, batch: _Batch) -> dict[str, torch.Tensor]:
        return batch_loss(out, batch[1], self.config, self.class_weight)


def build_model(model_config: EncoderConfig, device: torch.device, seed: int) -> LesionEncoder:
    torch.manual_seed(seed)
    return LesionEncoder(model_config).to(device)


def train_encoder(
    dataset: LesionCropDataset,
    model_config: EncoderConfig,
    config: EncoderTrainConfig,
    *,
    device: str | torch.device = "cpu",
    hooks: TrainHooks | None = None,
    world: World = SINGLE,
) -> EncoderTrainResult:
    """Train from random init (or the config's local backbone weights) on `dataset`.

    Always augmented (augment_batch on the device), whatever `dataset.augment` says. Under
    torchrun each process takes whole lesions of every P x K batch (P/N of them, so N must
    divide P), and its batch-level terms (LR, IR) compare those lesions only.
    """
    started, dev = time.perf_counter(), torch.device(device)
    task = EncoderTask(build_model(model_config, dev, config.seed), dataset, config, world)
    total = config.epochs * task.steps_per_epoch
    fit = FitConfig(
        epochs=config.epochs,
        schedule=Schedule(warmup=min(config.warmup_iters, total // 5)),
        grad_clip=config.grad_clip,
        seed=config.seed,
        amp=amp_dtype(dev),
    )
    hooked = () if hooks is None else [hooks]
    result = Engine(task, fit, device=dev, hooks=hooked, world=world).fit()
    task.model.eval()
    return EncoderTrainResult(
        task.model, result.losses, result.parts, time.perf_counter() - started
    )
