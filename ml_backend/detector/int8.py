"""int8 pre-labeling: the detector's backbone + FPN quantized statically with ONNX Runtime.

The backbone + FPN is nearly all of a Faster R-CNN's arithmetic at 800x800, and int8 kernels
(VNNI, or AVX2 where VNNI is missing) run it several times faster than fp32 on CPUs without bf16.
The RPN and box head stay in torch fp32. The quantized graph is a derived artefact beside the
sealed version (ml_backend.detector.precision says where): it is rebuilt from the weights, never
replaces them, and its sha256 is checked before it is used.

ONNX Runtime's QDQ static quantization is the product path. bench/detector_speed.py measures it
against PyTorch PT2E (x86 inductor quantizer) and OpenVINO + NNCF in one run: on R101-800 at
batch 1 those two were 12-16% faster (2.78x and 2.68x eager fp32, against 2.35x), at the same
accuracy. ONNX Runtime was kept because its graph is a file that is built once, checksummed and
loaded in a second, while PT2E compiles again in every process for each batch size (9-11 s
here) and OpenVINO 2026.4 returned the FPN's pool level scaled wrong after NNCF (the bench
patches it). Activations are uint8 and weights int8 per channel, calibrated (min/max) on
train-split images; the stem conv stays fp32.
"""

from __future__ import annotations

import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ml_backend.detector.frcnn import FasterRCNNDetector

INPUT = "image"


class Features(nn.Module):
    """The backbone + FPN with a tuple out, as ONNX export wants."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.backbone(x).values())


def feature_names(detector: FasterRCNNDetector) -> list[str]:
    """The FPN level names the RPN and RoI heads look up ("0".."3", "pool")."""
    size = detector.config.image_size
    with torch.inference_mode():
        return list(detector.model.backbone(torch.zeros(1, 3, size, size)).keys())


def quantize_backbone(
    detector: FasterRCNNDetector, calibration: Iterable[torch.Tensor], out: Path
) -> Path:
    """Write the int8 ONNX graph of a BN-folded fp32 detector's backbone + FPN to `out`.

    `calibration` yields CHW float images in [0, 1] (frcnn.to_input of train-split images); each
    goes through the model's own transform (resize, normalisation, padding), as at inference.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    size = detector.config.image_size
    features = Features(detector.model.backbone).eval()
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp:
        fp32, pre = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx")
        # The TorchScript exporter: the torch.export one needs onnxscript, not installed here.
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                features,
                (torch.zeros(1, 3, size, size),),
                str(fp32),
                opset_version=17,
                dynamo=False,
                input_names=[INPUT],
                dynamic_axes={INPUT: {0: "batch"}},
            )
        quant_pre_process(str(fp32), str(pre))
        quantize_static(
            str(pre),
            str(out),
            _Calibration(backbone_inputs(detector, calibration)),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_stem(pre),
            # Not CalibMaxIntermediateOutputs: ORT 1.32 drops each full chunk of ranges unmerged.
        )
    return out


def _stem(graph: Path) -> list[str]:
    """The first conv: it sees the image itself (3 channels), costs least to keep in fp32, and
    quantizing it cost the most accuracy of any single layer on the BUS-BRA small model."""
    import onnx

    convs = [n.name for n in onnx.load(str(graph)).graph.node if n.op_type == "Conv"]
    return convs[:1]


def backbone_inputs(
    detector: FasterRCNNDetector, images: Iterable[torch.Tensor]
) -> Iterator[torch.Tensor]:
    """What the backbone sees at inference: the FasterRCNN transform's batched tensors."""
    detector.model.eval()
    for image in images:
        with torch.inference_mode():  # not held across the yield: the caller's mode is its own
            tensor = detector.model.transform([image.to(detector.device)])[0].tensors[0].cpu()
        yield tensor.clone()  # a normal tensor, usable outside inference mode


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over CHW images, one batch-1 input at a time."""

    def __init__(self, images: Iterable[torch.Tensor]) -> None:
        self._left: Iterator[torch.Tensor] = iter(images)

    def get_next(self) -> dict[str, Any] | None:
        image = next(self._left, None)
        return None if image is None else {INPUT: image[None].contiguous().numpy()}

    def rewind(self) -> None:  # part of the reader protocol; one pass is all min/max needs
        return None


class OnnxBackbone(nn.Module):
    """Stands in for a FasterRCNN's backbone: runs the int8 graph, returns torch features."""

    def __init__(self, graph: Path, names: list[str], out_channels: int) -> None:
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the process's share of cores
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.names = names
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        outs = self.session.run(None, {INPUT: x.detach().float().contiguous().cpu().numpy()})
        return OrderedDict(
            (name, torch.from_numpy(out)) for name, out in zip(self.names, outs, strict=True)
        )


def use_int8(detector: FasterRCNNDetector, graph: Path, names: list[str]) -> None:
    """Swap the detector's backbone + FPN for the int8 graph (CPU only; in place)."""
    out_channels = int(detector.model.backbone.out_channels)
    detector.model.backbone = OnnxBackbone(graph, names, out_channels)
    detector.bf16 = False
    detector.precision = "int8"
