"""One settings object for the whole project, read from `LABELER_*` variables or `.env`.

It lives in `core`, the package every other one may import.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Precision = Literal["fp32", "bf16", "int8"]  # the arithmetic pre-labels ran in
PrecisionSetting = Literal["auto", "fp32", "bf16", "int8"]  # ml_backend.detector.precision


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LABELER_", env_file=".env", extra="ignore")

    home: Path = Field(Path("labeler-data"), description="Database, PNGs and models live here.")
    db_url: str = Field("", description="SQLAlchemy URL; empty means a SQLite file under home.")
    data_root: Path = Field(Path("."), description="Imports from outside this folder are refused.")
    id_salt: SecretStr | None = Field(
        None, description="Secret salt for patient-id hashes; generated once under home if unset."
    )
    sqlite_busy_timeout_ms: int = Field(30_000, ge=0)
    import_workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)), ge=1)
    import_commit_every: int = Field(100, ge=1, description="Rows per transaction during import.")
    n_folds: int = Field(5, ge=3, description="Patient-disjoint folds for sources without folds.")
    test_fold: int = Field(1, ge=1, description="Fold kept as the fixed test set.")
    val_fold: int = Field(2, ge=1, description="Fold used for validation during training.")
    score_threshold: float = Field(
        0.5, ge=0, le=1, description="Lesion recall / FP per image count boxes from this score."
    )
    grader: Literal["auto", "detector"] = Field(
        "auto", description="Who grades the boxes: auto = the active encoder, else the detector."
    )
    grader_flip_tta: bool = Field(
        False, description="The encoder grades each box and its mirror image, averaged."
    )
    target_sensitivity: float = Field(
        0.95, gt=0, le=1, description="Validation sensitivity each version's threshold reaches."
    )
    device: str = Field("cpu", description="torch device for training and pre-labeling.")
    predict_batch_size: int = Field(4, ge=1)
    predict_workers: int | None = Field(
        None,
        ge=0,
        description="Processes decoding images while `labeler predict` runs the model; 0: none; "
        "unset: 0 on the CPU, min(2, cores - 1) beside a GPU.",
    )
    prelabel_fold_bn: bool = Field(
        True, description="Fold BatchNorm + channels_last for pre-labeling (same boxes, faster)."
    )
    prelabel_precision: PrecisionSetting = Field(
        "auto",
        description="Arithmetic of pre-labeling and evaluation: auto = the fastest path `labeler "
        "models optimize` measured within prelabel_max_map_drop on this CPU (fp32 until then).",
    )
    prelabel_max_map_drop: float = Field(
        0.5, ge=0, le=100, description="mAP@0.5 points a faster path may cost against fp32."
    )
    prelabel_proposals: int | None = Field(
        None, ge=10, description="RPN proposals kept per image when pre-labeling (None: config)."
    )
    log_level: str = "INFO"

    prelabel_min_score: float = Field(
        0.05, ge=0, le=1, description="Boxes below this score are not shown to readers."
    )
    prelabel_max_boxes: int = Field(3, ge=1, description="At most this many boxes per pre-label.")
    retrain_min_new_labels: int = Field(
        20, ge=1, description="Accepted labels since the active version that trigger a retrain."
    )
    retrain_epochs: int = Field(2, ge=1, description="Fine-tuning epochs per retrain.")
    retrain_gate: Literal["map50", "sen_at_spe80"] = Field(
        "map50", description="Test-split metric a new version must not make worse."
    )
    retrain_no4: bool = Field(True, description="Also fine-tune the BI-RADS-4-excluded model.")
    retrain_optimize: bool = Field(
        True,
        description="After a promotion, measure the new versions' pre-label arithmetic (`labeler "
        "models optimize`, at most 200 validation images) before they pre-label the pool.",
    )
    retrain_include_reference: bool = Field(
        True, description="Train on the train split's reference labels as well as accepted ones."
    )
    al_strategy: Literal["random", "least-confidence", "margin", "entropy"] = Field(
        "entropy", description="Orders the readers' queue (prediction-based strategies only)."
    )
    consensus_quorum: int = Field(3, ge=1, description="Readers who must confirm a pre-label.")
    consensus_iou: float = Field(0.5, gt=0, le=1, description="Box IoU that counts as agreeing.")

    studio_url: str = Field("http://127.0.0.1:8080", description="Label Studio, as we call it.")
    studio_token: SecretStr | None = Field(
        None, description="Label Studio admin API token; generated under home if unset."
    )
    studio_admin_email: str = "admin@labeler.local"
    studio_project: str = Field("BI-RADS pre-label review", description="Project title.")
    studio_bin: str = Field(
        "", description="label-studio executable; empty: PATH, then .venv-ls beside this venv."
    )
    readers: list[str] = Field(
        ["reader1", "reader2", "reader3"], description="Reader accounts the demo creates."
    )
    backend_url: str = Field("http://127.0.0.1:9090", description="The ML backend, as LS calls it.")
    backend_auth: Literal["none", "basic", "bearer"] = Field(
        "none", description="Auth the ML backend demands (Label Studio sends basic)."
    )
    backend_user: str = "labelstudio"
    backend_password: SecretStr | None = Field(None, description="Basic-auth password.")
    backend_token: SecretStr | None = Field(None, description="Bearer token.")
    dashboard_port: int = Field(8501, ge=1, le=65535)

    # --- limits on hostile input (README "Reliability and security") ---
    image_hosts: list[str] = Field(
        [], description="Hosts besides Label Studio's own the backend may fetch images from."
    )
    max_body_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, description="Largest request body the backend reads (413)."
    )
    max_download_bytes: int = Field(
        50 * 1024 * 1024, ge=1024, description="Largest image the backend downloads (413)."
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Largest width x height decoded, checked before decoding."
    )
    predict_max_misses: int = Field(
        4, ge=0, description="Uncached tasks one /predict request may run the model on (503)."
    )
    ocr: Literal["auto", "off"] = Field(
        "auto", description="Look for text in the pixels at import (auto: if tesseract exists)."
    )

    @model_validator(mode="after")
    def _resolve(self) -> Settings:
        self.home = self.home.expanduser().resolve()
        self.data_root = self.data_root.expanduser().resolve()
        if not self.db_url:
            self.db_url = f"sqlite:///{self.home / 'labeler.db'}"
        if self.test_fold == self.val_fold or max(self.test_fold, self.val_fold) > self.n_folds:
            raise ValueError("test_fold and val_fold must differ and lie in 1..n_folds")
        return self

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    def salt(self) -> bytes:
        """The site's secret salt; created on first use and kept readable by its owner only."""
        if self.id_salt is not None:
            return self.id_salt.get_secret_value().encode()
        path = self.home / ".id_salt"
        if not path.exists():
            with contextlib.suppress(FileExistsError):  # another process made it first: use it
                _write_private(path, secrets.token_hex(32), replace=False)
        return path.read_text().strip().encode()

    @property
    def secrets_file(self) -> Path:
        return self.home / ".secrets.json"

    def stored_secret(self, name: str) -> str | None:
        """A secret made earlier, or None: reading never creates one."""
        path = self.secrets_file
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        return stored.get(name)

    def secret(self, name: str) -> str:
        """A generated secret (tokens, passwords) kept under home, readable by its owner only."""
        path = self.secrets_file
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if name not in stored:
            stored[name] = secrets.token_hex(20)
            _write_private(path, json.dumps(stored), replace=True)
        return stored[name]

    def backend_authorization(self) -> str | None:
        """The Authorization header the ML backend demands (LABELER_BACKEND_AUTH), for the
        callers that must send it themselves: Label Studio's webhooks. None: auth is off."""
        if self.backend_auth == "bearer" and self.backend_token is not None:
            return f"Bearer {self.backend_token.get_secret_value()}"
        if self.backend_auth == "basic" and self.backend_password is not None:
            pair = f"{self.backend_user}:{self.backend_password.get_secret_value()}"
            return "Basic " + base64.b64encode(pair.encode()).decode()
        return None

    def studio_api_token(self) -> str:
        if self.studio_token is not None:
            return self.studio_token.get_secret_value()
        return self.secret("studio_token")

    def split_for_fold(self, fold: int) -> str:
        """Map a patient-disjoint fold to the split it serves."""
        if fold == self.test_fold:
            return "test"
        if fold == self.val_fold:
            return "val"
        return "train"


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write a file readable by its owner only, whole or not at all: through a temp file that is
    removed on any failure (a full disk leaves neither a temp file nor an empty secret).
    `replace=False` never overwrites (FileExistsError), so a salt, once made, stays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as fh:  # mkstemp makes it 0600
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # atomic, and refuses an existing name
    finally:
        tmp.unlink(missing_ok=True)
