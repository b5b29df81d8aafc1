"""An encoder on disk: `encoder.pt` (state dict) + `encoder.json` (its EncoderConfig and notes).

The same two files make a registry version of kind `encoder` (ml_backend.registry.kinds), so a
trained encoder and the backend load one folder. Its similar-lesion index lives outside that
sealed folder, in LABELER_HOME/indexes/<version>/ (ml_backend/encoder/index.py says why).
Weights load with weights_only=True: a checkpoint never runs code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ml_backend.encoder.config import EncoderConfig
from ml_backend.encoder.model import LesionEncoder

WEIGHTS = "encoder.pt"
CONFIG = "encoder.json"


def save_encoder(
    model: LesionEncoder, folder: Path, *, notes: dict[str, Any] | None = None
) -> None:
    """Write the weights and the config; `notes` (method, data, metrics) go into encoder.json."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with (folder / WEIGHTS).open("wb") as fh:  # a full disk raises OSError, not torch text
        torch.save(state, fh)
    # backbone_weights only mattered at initialisation: the saved state already holds them
    config = model.config.model_copy(update={"backbone_weights": None})
    body = {"config": config.model_dump(), "notes": notes or {}}
    (folder / CONFIG).write_text(json.dumps(body, indent=2, sort_keys=True))


def read_notes(folder: Path) -> dict[str, Any]:
    notes: dict[str, Any] = json.loads((folder / CONFIG).read_text())["notes"]
    return notes


def load_encoder(folder: Path, *, device: str | torch.device = "cpu") -> LesionEncoder:
    """The encoder saved in `folder`, in eval mode on `device`."""
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not an encoder folder: {name} is missing")
    config = EncoderConfig.model_validate(json.loads((folder / CONFIG).read_text())["config"])
    model = LesionEncoder(config)
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()
