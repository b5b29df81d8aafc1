"""Train the lesion encoder on P lesions x K views batches, one loss recipe per method.

    baseline     cross-entropy (benign/malignant)
    lr           CE + lambda * lesion recognition (Guo et al., eq. 3)
    ir           CE + lambda * instance recognition (Guo et al.'s comparison)
    lr_entropy   confidence penalty (CE - alpha * entropy; Shi et al.) + lambda * LR
Every method adds Shi et al.'s BI-RADS MSE when the model has the BI-RADS head.

Like the detector's engine (ml_backend/training/engine.py): linear warmup then cosine decay,
AMP (bf16 where supported, else fp16 with a scaler) and channels_last on CUDA, fp32 on CPU with
denormals flushed (random-init trunks produce them and they are slow on x86). The run is
deterministic for a seed: model init, batch order and augmentations all derive from it.
Encoder runs are minutes, not hours, so there is no checkpoint/resume: an interrupted run starts
again.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from pydantic import BaseModel, ConfigDict, Field

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
from ml_backend.training.hooks import NoHooks, NonFiniteLossError, TrainHooks

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
    """One training run; the defaults are Guo et al.'s 8 x 8 batches and temperature 0.1."""

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
    temperature: float = Field(0.1, gt=0)
    lr_weight: float = Field(1.0, ge=0)  # lambda: weight of the LR/IR term
    lr_variant: LRVariant | None = None  # an ablation instead of the method's own term
    entropy_alpha: float = Field(0.1, ge=0)
    birads_weight: float = Field(0.1, ge=0)
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
            terms["ce"] = confidence_penalty_loss(x, y, alpha=config.entropy_alpha)
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


def schedule(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warmup (random init needs it), then cosine decay to 5% of the base rate."""

    def factor(it: int) -> float:
        if it < warmup:
            return 0.001 + (1 - 0.001) * it / warmup
        progress = (it - warmup) / max(1, total - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def make_optimizer(model: torch.nn.Module, config: EncoderTrainConfig) -> torch.optim.Optimizer:
    """Weight decay on weight matrices and kernels only, not on norms, biases or GeM's p."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
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


class _Step:
    """One optimisation step: forward under autocast, fp32 losses, scaled backward, clip."""

    def __init__(
        self, model: LesionEncoder, config: EncoderTrainConfig, device: torch.device
    ) -> None:
        self.model, self.config, self.device = model, config, device
        self.dtype = amp_dtype(device)
        self.optimizer = make_optimizer(model, config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)
        self.class_weight: torch.Tensor | None = None

    def __call__(self, crops: torch.Tensor, targets: BatchTargets) -> dict[str, float]:
        if self.device.type == "cuda":
            crops = crops.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            out = self.model(crops)
        terms = batch_loss(out, targets, self.config, self.class_weight)
        loss = torch.stack(list(terms.values())).sum()
        if not torch.isfinite(loss):
            parts = {k: round(float(v.detach()), 4) for k, v in terms.items()}
            raise NonFiniteLossError(
                f"encoder loss became {float(loss.detach())} ({parts}); lower the learning "
                "rate or lengthen the warmup"
            )
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(self.scaler.scale(loss))
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"total": float(loss.detach()), **{k: float(v.detach()) for k, v in terms.items()}}


def build_model(model_config: EncoderConfig, device: torch.device, seed: int) -> LesionEncoder:
    torch.manual_seed(seed)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    model = LesionEncoder(model_config).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def train_encoder(
    dataset: LesionCropDataset,
    model_config: EncoderConfig,
    config: EncoderTrainConfig,
    *,
    device: str | torch.device = "cpu",
    hooks: TrainHooks | None = None,
) -> EncoderTrainResult:
    """Train from random init (or the config's local backbone weights) on `dataset`.

    Always augmented (augment_batch on the device), whatever `dataset.augment` says.
    """
    hooks, dev, started = hooks or NoHooks(), torch.device(device), time.perf_counter()
    model = build_model(model_config, dev, config.seed)
    contexts, targets = dataset.stacked(dev), dataset_targets(dataset, dev)
    sampler = make_sampler(dataset, config)
    generator = torch.Generator().manual_seed(config.seed)  # augmentation draws
    step = _Step(model, config, dev)
    if config.balanced_classes:
        step.class_weight = class_weights(dataset).to(dev)
    steps = len(sampler)
    total_iters = config.epochs * steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        step.optimizer, schedule(min(config.warmup_iters, total_iters // 5), total_iters)
    )
    losses: list[float] = []
    parts: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        sums: defaultdict[str, float] = defaultdict(float)
        epoch_start = time.perf_counter()
        for i, batch in enumerate(sampler, start=1):
            index = torch.tensor(batch, device=dev)
            crops = augment_batch(contexts[index], dataset.size, generator=generator)
            crops = crops.expand(-1, 3, -1, -1) if crops.shape[1] == 1 else crops
            values = step(crops, BatchTargets(*(t[index] for t in targets)))
            scheduler.step()
            for key, value in values.items():
                sums[key] += value
            rate = i * len(batch) / (time.perf_counter() - epoch_start)
            hooks.on_step(epoch, i, steps, values["total"], rate)
        means = {k: v / max(steps, 1) for k, v in sums.items()}
        losses.append(means.pop("total", math.nan))
        parts.append(means)
        hooks.on_epoch_end(epoch, losses[-1])
    model.eval()
    return EncoderTrainResult(model, losses, parts, time.perf_counter() - started)
