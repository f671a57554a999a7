"""Helpers of the reparam tests (tests/test_reparam_*.py)."""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from sgs_mm.reparam import BranchBlock

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])

# (kind, linear) of every form to_branches builds
FORMS = [('acb', False), ('repvgg', False), ('dbb', False), ('acb', True), ('repvgg', True)]

FIXTURE_IMAGES = ('imagenet_tiny/color.jpg', 'imagenet_tiny/gray.jpg',
                  'cityscapes_tiny/leftImg8bit/val/frankfurt/'
                  'frankfurt_000000_000294_leftImg8bit.png', 'mpii_tiny/060754485.jpg')


def fixture_batch(fixtures: Path, size: int = 64, device='cpu') -> torch.Tensor:
    """The real fixture photos as one (4, 3, size, size) batch, resized and
    normalised with the ImageNet mean/std (as mmpretrain's preprocessor)."""
    from PIL import Image
    mean, std = np.array([123.675, 116.28, 103.53]), np.array([58.395, 57.12, 57.375])
    imgs = []
    for rel in FIXTURE_IMAGES:
        img = Image.open(fixtures / rel).convert('RGB').resize((size, size), Image.BILINEAR)
        imgs.append((np.asarray(img, dtype=np.float64) - mean) / std)
    return torch.tensor(np.stack(imgs), dtype=torch.float32).permute(0, 3, 1, 2).to(device)


def perturb(model: nn.Module, seed: int = 0) -> None:
    """Give every BN random affine parameters and running statistics and
    every branch conv (zero side branches of the Lemma 1 form included)
    random weights, so that fusing has something non-trivial to fuse."""
    g = torch.Generator().manual_seed(seed)

    def rand(t, lo, hi):
        return (torch.rand(t.shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).to(t)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.weight.copy_(rand(m.weight, 0.5, 1.5))
                m.bias.copy_(rand(m.bias, -0.2, 0.2))
                m.running_mean.copy_(rand(m.running_mean, -0.2, 0.2))
                m.running_var.copy_(rand(m.running_var, 0.5, 2.0))
            if isinstance(m, BranchBlock):
                for p in m.branches.parameters():
                    fan_in = p[0].numel() if p.dim() > 1 else 1
                    p.copy_(rand(p, -1, 1) / fan_in ** 0.5)


def blocks(model: nn.Module) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, BranchBlock)}


def shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |a|."""
    return float((a - b).abs().max() / a.abs().max())


# Fused vs branched in float32: one conv with the summed kernel against the
# sum of the branch convs (each with its BN) rounds differently; per layer the
# difference is a few float32 ulps of the output (eps 1.2e-7 times a fan-in of
# up to 4608 terms), and it passes through up to 50 layers of a ResNet-50.
# Measured: <= 4.1e-6 of the output's maximum (full-width ResNet-18/50, random BN
# statistics, fixture photos at 96x96); 1e-4 leaves margin for other
# CPUs/GPUs (TF32 is off for these convs, see the cuda tests).
FUSE_RTOL = 1e-4


@pytest.fixture
def no_tf32():
    """TF32 convs (cuDNN's default on Ampere and later) round to 10 mantissa
    bits: fused vs branched would differ by ~1e-3, which says nothing about
    the fusion. Off for the test, restored after."""
    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = old
