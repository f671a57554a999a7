"""G comes from the tensor the kernel slides over (SGS_SPEC §2.1; issue 15, cases 1 and 4).

Two modules that compute the same function get the same G: a conv that pads
with ``padding_mode`` or inside its own forward (mmcv's Conv2dAdaptivePadding,
TF-style 'same') gets the G of an explicit pad layer followed by an unpadded
conv. Unbatched (C, H, W) inputs and ``refresh(tensor)`` work.
"""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sgs_mm.sgs import SpatialGradScaler

PAD_MODES = ('reflect', 'replicate', 'circular')
DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def smooth(n=2, c=3, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.randn(n, c, size + 4, size + 4, generator=g), 5, 1, 0) * 3
    # a ramp makes the borders differ from their mirror images
    ramp = torch.linspace(-2, 2, size)
    return x + ramp.view(1, 1, 1, -1) + 0.5 * ramp.view(1, 1, -1, 1)


class Pad(nn.Module):
    """An explicit pad layer: (left, right, top, bottom) with ``mode``."""

    def __init__(self, pad, mode='constant'):
        super().__init__()
        self.pad, self.mode = tuple(pad), mode

    def forward(self, x):
        return F.pad(x, self.pad, mode=self.mode)


class TFSameConv(nn.Conv2d):
    """TensorFlow 'SAME' padding computed in forward (timm's Conv2dSame style)."""

    def forward(self, x):
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        ph = max((math.ceil(ih / self.stride[0]) - 1) * self.stride[0] +
                 (kh - 1) * self.dilation[0] + 1 - ih, 0)
        pw = max((math.ceil(iw / self.stride[1]) - 1) * self.stride[1] +
                 (kw - 1) * self.dilation[1] + 1 - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def g_of(module, x, name=None, device='cpu', **kwargs):
    """G of the (only, or ``name``d) eligible conv of ``module`` on ``x``."""
    module, x = module.to(device), x.to(device)
    sgs = SpatialGradScaler(module, **kwargs)
    sgs.refresh([x])
    scales = sgs.scales()
    return scales[name] if name else next(iter(scales.values()))


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('mode', PAD_MODES)
@pytest.mark.parametrize('kernel,dilation', [(3, 1), (5, 2)])
def test_padding_mode_gives_the_g_of_an_explicit_pad(mode, kernel, dilation, device):
    torch.manual_seed(0)
    p = dilation * (kernel - 1) // 2
    x = smooth()
    conv = nn.Conv2d(3, 4, kernel, padding=p, dilation=dilation, padding_mode=mode)
    explicit = nn.Sequential(Pad((p, p, p, p), mode),
                             nn.Conv2d(3, 4, kernel, padding=0, dilation=dilation))
    g = g_of(conv, x, device=device)
    torch.testing.assert_close(g, g_of(explicit, x, device=device), rtol=0, atol=1e-12)
    # and differs from the zero-padded G (the bug: it was the zero-padded one)
    zero = nn.Conv2d(3, 4, kernel, padding=p, dilation=dilation)
    assert (g - g_of(zero, x, device=device)).abs().max() > 1e-3


@pytest.mark.parametrize('mode', ('reflect', 'replicate'))
def test_mmcv_convmodule_and_plain_conv_agree(mode):
    # ConvModule pads with a padding layer, then runs an unpadded nn.Conv2d
    # (its 'circular' is not comparable: mmcv 2.1 drops it and zero-pads)
    from mmcv.cnn import ConvModule
    x = smooth()
    module = ConvModule(3, 4, 3, padding=1, padding_mode=mode)
    plain = nn.Conv2d(3, 4, 3, padding=1, padding_mode=mode)
    torch.testing.assert_close(g_of(module, x), g_of(plain, x), rtol=0, atol=1e-12)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('stride,size', [(1, 12), (2, 12), (2, 11)])
def test_conv_that_pads_in_its_own_forward(stride, size, device):
    """mmcv's Conv2dAdaptivePadding and a TF-'same' conv: the padding their
    forward applies (asymmetric for stride 2) is the padding of their G."""
    from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
    x = smooth(size=size)
    ph = max((math.ceil(size / stride) - 1) * stride + 3 - size, 0)
    explicit = nn.Sequential(Pad((ph // 2, ph - ph // 2, ph // 2, ph - ph // 2)),
                             nn.Conv2d(3, 4, 3, stride=stride, padding=0))
    want = g_of(explicit, x, device=device)
    for cls in (Conv2dAdaptivePadding, TFSameConv):
        conv = cls(3, 4, 3, stride=stride)
        assert conv.padding == (0, 0)
        torch.testing.assert_close(g_of(conv, x, device=device), want, rtol=0, atol=1e-12,
                                   msg=cls.__name__)
    if stride == 1:  # the same function as padding=1
        torch.testing.assert_close(g_of(nn.Conv2d(3, 4, 3, padding=1), x, device=device),
                                   want, rtol=0, atol=1e-12)


@pytest.mark.parametrize('mode', ('zeros', ) + PAD_MODES)
def test_padding_same_string(mode):
    x = smooth()
    same = nn.Conv2d(3, 4, 5, padding='same', dilation=2, padding_mode=mode)
    numeric = nn.Conv2d(3, 4, 5, padding=4, dilation=2, padding_mode=mode)
    torch.testing.assert_close(g_of(same, x), g_of(numeric, x), rtol=0, atol=1e-12)


def test_direct_conv_forward_path_pads_like_the_conv():
    """A path that calls conv._conv_forward itself (mmengine's
    efficient_conv_bn_eval) sees the padding_mode too."""

    class Fused(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode='reflect')

        def forward(self, x):
            return self.conv._conv_forward(x, self.conv.weight * 1.0, self.conv.bias)

    x = smooth()
    want = g_of(nn.Sequential(Pad((1, 1, 1, 1), 'reflect'), nn.Conv2d(3, 4, 3)), x)
    torch.testing.assert_close(g_of(Fused(), x), want, rtol=0, atol=1e-12)


# ------------------------------------------------------------ inputs (case 4)
def test_unbatched_conv_input_is_one_sample():
    class Unbatched(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode='reflect')

        def forward(self, x):  # x: (N, C, H, W); the conv gets (C, H, W) samples
            return torch.stack([self.conv(s) for s in x])

    x = smooth(n=2)
    net = Unbatched()
    batched = nn.Sequential()
    batched.conv = net.conv
    torch.testing.assert_close(g_of(net, x), g_of(batched, x), rtol=0, atol=1e-12)


def test_refresh_with_a_bare_tensor_is_one_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3))
    x = smooth(n=3)
    sgs = SpatialGradScaler(net)
    report = sgs.refresh(x)
    assert report.refresh == 1 and not report.idle
    again = SpatialGradScaler(net)
    again.refresh([x])
    for n, g in sgs.scales().items():
        torch.testing.assert_close(g, again.scales()[n], rtol=0, atol=0)


def test_refresh_with_no_batch_says_what_to_pass():
    sgs = SpatialGradScaler(nn.Conv2d(3, 4, 3))
    with pytest.raises(ValueError, match='at least one batch'):
        sgs.refresh([])
