"""Process-wide float settings, made once by each entry point: the `labeler` CLI (which also
starts the HTTP backend), the training child, the benches and the test session. Constructors and
training functions leave the process's floating-point state alone."""

from __future__ import annotations

import numpy as np
import torch


def flush_denormals() -> None:
    """Flush denormal floats to zero in this thread and the threads it starts afterwards.

    Random-init models produce denormals, and they made CPU training and inference steps 2-8x
    slower. numpy reads its float limits first: under flush-to-zero it would warn, at its first
    `finfo`, that the smallest subnormal is zero.
    """
    for dtype in (np.float16, np.float32, np.float64):
        np.finfo(dtype)
    torch.set_flush_denormal(True)
