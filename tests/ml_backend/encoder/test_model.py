"""The encoder: GeM, output shapes and norms, local weights only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import resnet18

from core.errors import BadInputError
from ml_backend.encoder.config import Backbone, EncoderConfig
from ml_backend.encoder.model import GeM, LesionEncoder, build_trunk


def test_gem_with_p_1_is_average_pooling() -> None:
    x = torch.rand(2, 5, 4, 3) + 0.01  # positive, as after a ReLU
    pooled = GeM(1.0)(x)
    expected = F.adaptive_avg_pool2d(x, 1).flatten(1)
    torch.testing.assert_close(pooled, expected)


def test_gem_hand_value_and_large_p_approaches_max() -> None:
    x = torch.tensor([1.0, 3.0]).reshape(1, 1, 1, 2)
    assert float(GeM(2.0)(x).detach()) == pytest.approx(math.sqrt((1 + 9) / 2))
    # (1 + 3^100) / 2)^(1/100) = 3 * 2^(-1/100) (1 + 3^-100)^(1/100); 3^100 overflows fp32
    assert float(GeM(100.0)(x).detach()) == pytest.approx(3 * 2 ** (-1 / 100))


def test_gem_does_not_overflow_in_half_precision() -> None:
    x = torch.full((1, 1, 2, 2), 100.0, dtype=torch.float16)  # 100^3 > fp16 max (65504)
    assert float(GeM(3.0, learn_p=False).half()(x)) == pytest.approx(100.0, rel=1e-3)


def test_gem_p_is_learned() -> None:
    gem = GeM(3.0)
    (grad,) = torch.autograd.grad(gem(torch.rand(1, 2, 3, 3) + 0.1).sum(), gem.p)
    assert gem.p.requires_grad and float(grad) != 0.0
    assert not GeM(3.0, learn_p=False).p.requires_grad


def test_resnet18_forward_shapes_and_unit_norm() -> None:
    torch.manual_seed(0)
    torch.set_flush_denormal(True)
    encoder = LesionEncoder(EncoderConfig(backbone="resnet18"))
    out = encoder(torch.rand(2, 3, 64, 64))
    assert out.embedding.shape == (2, 512) and out.logits.shape == (2, 2)
    assert out.birads is None
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.trunk.modules())


def test_projection_and_birads_head() -> None:
    torch.manual_seed(0)
    encoder = LesionEncoder(EncoderConfig(embedding_dim=16, birads_head=True))
    out = encoder(torch.rand(2, 3, 64, 64))
    assert out.embedding.shape == (2, 16) and out.birads is not None and out.birads.shape == (2,)
    torch.testing.assert_close(out.embedding.norm(dim=1), torch.ones(2))
    loss = out.logits.sum() + out.birads.sum() + out.embedding.sum()
    grads = torch.autograd.grad(loss, [encoder.pool.p, *encoder.trunk.parameters()])
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    ("backbone", "channels"), [("resnet18", 512), ("resnet50", 2048), ("densenet121", 1024)]
)
def test_trunk_channels(backbone: Backbone, channels: int) -> None:
    trunk, features = build_trunk(EncoderConfig(backbone=backbone))
    assert features == channels
    assert trunk.eval()(torch.rand(1, 3, 32, 32)).shape[1] == channels


def test_weights_come_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(source.state_dict(), path)
    encoder = LesionEncoder(EncoderConfig(backbone_weights=str(path)))
    conv1 = encoder.trunk.get_submodule("0")
    assert isinstance(conv1, torch.nn.Conv2d)
    torch.testing.assert_close(conv1.weight, source.conv1.weight)
    partial = {k: v for k, v in source.state_dict().items() if not k.startswith("layer4")}
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(BadInputError, match="lacks backbone keys"):
        LesionEncoder(EncoderConfig(backbone_weights=str(tmp_path / "partial.pt")))


def test_gem_gradients_equal_the_plain_formula() -> None:
    x = (torch.rand(2, 3, 4, 4, dtype=torch.float64) + 0.1).requires_grad_()
    gem = GeM(3.0).double()
    plain = x.pow(gem.p).mean(dim=(-2, -1)).pow(1 / gem.p)
    got = torch.autograd.grad(gem(x).sum(), [x, gem.p])
    expected = torch.autograd.grad(plain.sum(), [x, gem.p])
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e)
