"""Train a Faster R-CNN on the shared engine: checkpoints, resume after a kill, stop on NaN.

The detector's part is small: SGD with momentum on the trainable parameters, a shuffled loader
seeded per epoch (a DistributedSampler: under torchrun each process takes its share of every
global batch of `batch_size`), per-image seeded augmentation and sampling, and torchvision's own
loss dict (loss_classifier, loss_box_reg, loss_objectness, loss_rpn_box_reg) as the named parts.
fp32 on CPU (no native bf16 here: autocast is slower); fp16 AMP + channels_last on CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler
from torchvision.models.detection import FasterRCNN

from ml_backend.detector.config import DetectorConfig, TrainConfig
from ml_backend.detector.data import DetectionDataset, Sample, Target, collate
from ml_backend.detector.frcnn import WEIGHTS, FasterRCNNDetector
from ml_backend.detector.sampling import seed_samplers
from ml_backend.training.distributed import SINGLE, World
from ml_backend.training.engine import Checkpoint, Engine, FitConfig, Schedule
from ml_backend.training.hooks import TrainHooks

CHECKPOINT = "checkpoint.pt"
_Batch = tuple[list[torch.Tensor], list[Target]]


@dataclass(frozen=True)
class TrainResult:
    detector: FasterRCNNDetector
    epochs_done: int
    resumed_from: int  # epochs already done when this call started
    losses: list[float]  # mean loss per epoch trained in this call
    parts: list[dict[str, float]]  # mean of each of torchvision's loss terms, same epochs


@dataclass(frozen=True)
class DetectorTask:
    detector: FasterRCNNDetector
    dataset: DetectionDataset
    train: TrainConfig
    world: World = SINGLE

    @property
    def model(self) -> FasterRCNN:
        return self.detector.model

    @property
    def steps_per_epoch(self) -> int:
        share = math.ceil(len(self.dataset) / self.world.size)
        return math.ceil(share / self.world.share(self.train.batch_size))

    def optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        tc = self.train
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)

    def batches(self, epoch: int) -> Iterator[tuple[_Batch, int]]:
        """This process's share of each global batch: rank r of N takes every N-th image of the
        epoch's permutation (the one a single process would draw), so one global batch is the
        same images whatever N is."""
        self.dataset.epoch_seed = self.train.seed * 1000 + epoch
        sampler = DistributedSampler[tuple[torch.Tensor, Target]](
            self.dataset,
            num_replicas=self.world.size,
            rank=self.world.rank,
            shuffle=True,
            seed=self.train.seed * 1000,
        )
        sampler.set_epoch(epoch)
        loader = DataLoader(
            self.dataset,
            batch_size=self.world.share(self.train.batch_size),
            sampler=sampler,
            collate_fn=collate,
        )
        device = self.detector.device
        for images, targets in loader:
            moved = [{k: v.to(device) for k, v in t.items()} for t in targets]
            yield ([i.to(device) for i in images], moved), len(images)

    def forward(self, model: torch.nn.Module, batch: _Batch) -> dict[str, torch.Tensor]:
        seed_samplers(self.model, [int(t["seed"]) for t in batch[1]])
        losses: dict[str, torch.Tensor] = model(*batch)
        return losses

    def losses(self, out: dict[str, torch.Tensor], batch: _Batch) -> dict[str, torch.Tensor]:
        return out


def train(
    config: DetectorConfig,
    samples: Sequence[Sample],
    *,
    home: Path,
    work_dir: Path,
    resume: bool = False,
    device: str = "cpu",
    hooks: TrainHooks | None = None,
    init_from: Path | None = None,
    world: World = SINGLE,
) -> TrainResult:
    """`init_from`: a registered version's folder to fine-tune from (same label space).
    Under torchrun, every process calls this with its `world`; rank 0 writes the checkpoint."""
    tc = config.train
    torch.manual_seed(tc.seed)
    detector = FasterRCNNDetector(config, device=device)
    if init_from is not None:
        state = torch.load(init_from / WEIGHTS, map_location=detector.device, weights_only=True)
        detector.model.load_state_dict(state)
    dataset = DetectionDataset(
        samples,
        home,
        size=config.image_size,
        box_categories=config.box_categories,
        augment=tc.augment != "none",
        up_down=tc.augment == "paper",
    )
    cuda = detector.device.type == "cuda"
    fit = FitConfig(
        epochs=tc.epochs,
        schedule=Schedule(warmup=tc.warmup_iters),
        grad_clip=tc.grad_clip,
        seed=tc.seed,
        amp=torch.float16 if cuda else None,
    )
    engine = Engine(
        DetectorTask(detector, dataset, tc, world),
        fit,
        device=detector.device,
        hooks=() if hooks is None else [hooks],
        world=world,
    )
    checkpoint = Checkpoint(work_dir / CHECKPOINT, key=config.model_dump(mode="json"))
    result = engine.fit(checkpoint, resume=resume)
    start = result.resumed_from
    return TrainResult(detector, tc.epochs, start, result.losses[start:], result.parts[start:])
