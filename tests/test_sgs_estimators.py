"""SGS estimators (SGS_SPEC §2) against hand-checkable cases and a plain loop."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import shared_dir
from sgs_loop_reference import loop_scaling, nmi_pair
from sgs_mm.sgs import (AutocorrStats, NMIStats, PairGeometry, collect_dependence,
                        fixed_scaling, half_window, k_transform, reparam_scaling,
                        scaling_from_dependence)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='needs a CUDA device (GPU counterpart of a CPU test)')


def estimate(conv, inputs, method='nmi', diag_removal=False, k=5.0, respect_dilation=True,
             max_elems=1 << 22, device='cpu'):
    """G of ``conv`` from a list of input batches through the real collection path,
    with the conv and its inputs on ``device``."""
    conv = conv.to(device)
    inputs = [x.to(device) for x in inputs]
    geo = PairGeometry.from_conv(conv, respect_dilation)
    if method == 'nmi':
        acc = NMIStats(geo, conv.in_channels, device, max_elems, diag_removal=diag_removal)
    else:
        acc = AutocorrStats(geo, conv.in_channels, device, max_elems)

    def run():
        for x in inputs:
            conv(x)

    collect_dependence({'conv': conv}, lambda n, c: acc, run)
    return acc, scaling_from_dependence(acc.dependence(), geo.displacements,
                                        tuple(conv.kernel_size), k)


def smooth(n, c, h, w, seed=0, kernel=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g)
    return F.avg_pool2d(x, kernel, 1, kernel // 2)


def image_tensor(folder):
    """A real photo (fixture) as a (2, 3, 48, 64) float tensor, else None."""
    path = folder / 'fixtures' / 'imagenet_tiny' / 'color.jpg'
    if not path.exists():
        return None
    import cv2
    img = cv2.imread(str(path))
    crops = [img[:96, :128], img[-96:, -128:]]
    arr = np.stack([cv2.resize(c, (64, 48)) for c in crops]).astype(np.float32) / 255.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------- hand checks
def test_half_window_matches_reference_order():
    assert half_window((3, 3)) == [(-1, -1), (-1, 0), (-1, 1), (0, -1)]
    assert len(half_window((7, 7))) == 24
    assert len(half_window((5, 3))) == 7


def test_identical_and_independent_variables():
    rng = np.random.default_rng(0)
    p = rng.normal(size=4096)
    assert nmi_pair(p, p) == pytest.approx(1.0)
    # our estimator: a map whose displaced neighbour is an exact copy -> S = 1
    x = torch.randn(1, 1, 64, 1).repeat(1, 1, 1, 64)  # constant along width
    acc = NMIStats(PairGeometry((3, 3), (0, 0, 0, 0), (1, 1), ((0, -1), )), 1, 'cpu')
    for pass_idx in range(acc.num_passes):
        acc.update(pass_idx, x)
        acc.end_pass(pass_idx)
    assert acc.dependence()[0, 0].item() == pytest.approx(1.0, abs=1e-12)
    # independent pixels: S close to 0 (plug-in bias only)
    noise = torch.randn(4, 2, 128, 128, generator=torch.Generator().manual_seed(1))
    acc, g = estimate(nn.Conv2d(2, 2, 3, padding=1), [noise])
    s = acc.dependence()
    assert s.abs().max() < 0.01
    # then G is ~ centre 1 / off-centre ~0 before normalisation: centre dominates
    assert g[1, 1] > 5 * g[0, 0]


def test_constant_channel_is_ignored_and_all_constant_keeps_none():
    x = smooth(2, 3, 16, 16)
    x[:, 1] = 0.7  # constant channel: H(P,Q) = 0 -> NaN -> ignored by the channel mean
    acc, g = estimate(nn.Conv2d(3, 4, 3, padding=0), [x])
    s = acc.dependence()
    assert torch.isnan(s[:, 1]).all() and not torch.isnan(s[:, [0, 2]]).any()
    ref = loop_scaling(x.numpy(), (3, 3))
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)
    _, g_none = estimate(nn.Conv2d(3, 4, 3, padding=0), [torch.full((2, 3, 8, 8), 2.0)])
    assert g_none is None


def test_max_is_included_in_last_bin():
    # the reference drops max-valued samples (max + 1e-12 in float32); we count them
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = 1.0
    conv = nn.Conv2d(1, 1, 3, padding=0)
    acc, _ = estimate(conv, [x])
    assert int(acc.hist.sum()) == int(acc.n_pairs.sum())


# ------------------------------------------------------ agreement with a loop
CASES = [
    # (kernel, padding, dilation, diag_removal)
    ((3, 3), 1, 1, False),
    ((3, 3), 1, 1, True),
    ((7, 7), 3, 1, False),
    ((7, 7), 3, 1, True),
    ((3, 3), 2, 2, False),
    ((3, 3), 2, 2, True),
    ((5, 3), (2, 1), 1, False),
    ((3, 5), (1, 2), (1, 2), True),
]


@pytest.mark.parametrize('kernel,padding,dilation,diag', CASES)
def test_nmi_matches_loop_on_random(kernel, padding, dilation, diag):
    x = smooth(2, 3, 13, 15, seed=3)
    if diag:
        x = F.relu(x)  # real zeros, like post-ReLU features
    conv = nn.Conv2d(3, 5, kernel, padding=padding, dilation=dilation)
    acc, g = estimate(conv, [x], diag_removal=diag)
    ref = loop_scaling(x.numpy(), kernel, acc.geometry.padding, acc.geometry.step,
                       diag_removal=diag)
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)
    assert g.mean().item() == pytest.approx(1.0) and (g > 0).all()


@pytest.mark.parametrize('kernel,padding,dilation,diag', CASES[:6])
def test_nmi_matches_loop_on_real_image(kernel, padding, dilation, diag):
    x = image_tensor(shared_dir())
    if x is None:
        pytest.skip(f'real image fixture not found under {shared_dir()} (users\' clones)')
    if diag:
        x = F.relu(x - 0.4)
    conv = nn.Conv2d(3, 4, kernel, padding=padding, dilation=dilation)
    acc, g = estimate(conv, [x], diag_removal=diag)
    ref = loop_scaling(x.numpy(), kernel, acc.geometry.padding, acc.geometry.step,
                       diag_removal=diag)
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)


def test_respect_dilation_false_uses_unit_step():
    x = smooth(2, 2, 12, 12, seed=5)
    conv = nn.Conv2d(2, 2, 3, padding=2, dilation=2)
    acc, g = estimate(conv, [x], respect_dilation=False)
    assert acc.geometry.step == (1, 1)
    ref = loop_scaling(x.numpy(), (3, 3), (2, 2, 2, 2), (1, 1))
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)
    _, g_dil = estimate(conv, [x], respect_dilation=True)
    assert not torch.allclose(g, g_dil)


def test_same_and_valid_padding_strings():
    x = smooth(1, 2, 10, 11, seed=6)
    for padding, expect in (('same', (2, 2, 1, 1)), ('valid', (0, 0, 0, 0))):
        conv = nn.Conv2d(2, 2, (5, 3), padding=padding)
        acc, g = estimate(conv, [x])
        assert acc.geometry.padding == expect
        ref = loop_scaling(x.numpy(), (5, 3), expect, (1, 1))
        np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)


def test_batches_and_chunks_merge_exactly():
    x = smooth(4, 3, 14, 14, seed=7)
    conv = nn.Conv2d(3, 3, 3, padding=1)
    acc_one, g_one = estimate(conv, [x])
    acc_split, g_split = estimate(conv, [x[:1], x[1:3], x[3:]], max_elems=100)
    assert torch.equal(acc_one.hist, acc_split.hist)
    assert torch.equal(g_one, g_split)
    assert int(acc_split.calls) == 3


def test_autocorr_matches_loop():
    x = smooth(2, 3, 12, 13, seed=8)
    x[:, 2] = 1.5  # constant -> NaN -> ignored
    conv = nn.Conv2d(3, 3, 3, padding=1)
    _, g = estimate(conv, [x[:1], x[1:]], method='autocorr')
    ref = loop_scaling(x.numpy(), (3, 3), (1, 1, 1, 1), (1, 1), method='autocorr')
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize('method', ['nmi', 'autocorr'])
def test_nonfinite_inputs_never_give_nan(method):
    x = smooth(2, 3, 10, 10, seed=9)
    x[0, 0, 3, 3] = math.nan
    x[1, 1, 5, 5] = math.inf
    conv = nn.Conv2d(3, 3, 3, padding=1)
    acc, g = estimate(conv, [x], method=method)
    assert int(acc.nonfinite[:, 0].sum()) > 0 and int(acc.nonfinite[:, 2].sum()) == 0
    # channels 0 and 1 ignored; G from channel 2 alone
    ref = loop_scaling(x[:, 2:].numpy(), (3, 3), (1, 1, 1, 1), (1, 1), method=method)
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)
    _, g_all = estimate(conv, [torch.full((1, 3, 6, 6), math.nan)], method=method)
    assert g_all is None


# ----------------------------------------------------------- static scalings
def test_k_transform_and_fixed_reparam():
    s = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(k_transform(s, 5.0), torch.tensor([0.0, 5 / 6, 1.0]))
    g = fixed_scaling(1.7, 5.0)
    assert g.mean().item() == pytest.approx(1.0)
    assert g[1, 1] / g[0, 1] == pytest.approx(1.7) and g[1, 1] / g[0, 0] == pytest.approx(5.0)
    acb = reparam_scaling([(3, 3), (1, 3), (3, 1)], (3, 3), normalize=False)
    assert acb.tolist() == [[1, 2, 1], [2, 3, 2], [1, 2, 1]]
    rep = reparam_scaling([(3, 3), (1, 1)], (3, 3), normalize=True)
    assert rep.mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match='does not fit'):
        reparam_scaling([(5, 5)], (3, 3))


def test_per_displacement_ranges_that_differ_from_the_map_are_binned_exactly():
    # channel 0's maximum sits in the last row: P crops of downward displacements
    # miss it, so their range differs from the map's (shared bin indices cannot
    # be reused there) while channel 1 still shares them.
    x = smooth(2, 2, 9, 9, seed=11)
    x[1, 0, -1, 4] = 10.0
    conv = nn.Conv2d(2, 2, 3, padding=0)
    acc, g = estimate(conv, [x])
    match = torch.cat([acc.match_p, acc.match_q])
    assert bool((match.any(1) & ~match.all(1)).any())  # shared and own bins in one crop
    ref = loop_scaling(x.numpy(), (3, 3))
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-6)


# ----------------------------------------------------- chunk size and device
# (kernel, padding, dilation, diag_removal, nonfinite): the 7x7 stem, a dilated
# conv, the ImageNet variant and NaN/Inf inputs
DEVICE_CASES = [
    ((7, 7), 3, 1, False, False),
    ((7, 7), 3, 1, True, False),
    ((3, 3), 2, 2, False, False),
    ((3, 3), 2, 2, True, False),
    ((3, 3), 1, 1, False, True),
    ((3, 3), 1, 1, True, True),
]


def device_case_input(diag, nonfinite, n=3, seed=12):
    x = smooth(n, 4, 17, 19, seed=seed)
    if diag:
        x = F.relu(x)
    if nonfinite:
        x[0, 0, 3, 3] = math.nan
        x[1, 2, 5, 6] = -math.inf
    return x


@pytest.mark.parametrize('kernel,padding,dilation,diag,nonfinite', DEVICE_CASES)
def test_nmi_is_bit_identical_for_every_chunk_size(kernel, padding, dilation, diag, nonfinite):
    x = device_case_input(diag, nonfinite)
    conv = nn.Conv2d(4, 3, kernel, padding=padding, dilation=dilation)
    acc_ref, g_ref = estimate(conv, [x], diag_removal=diag, max_elems=None)
    assert acc_ref.max_elems == 1 << 20  # the CPU default, resolved
    assert g_ref is not None
    # one sample per chunk, a few samples, everything in one chunk, explicit 2**20
    for max_elems in (1, 4000, 1 << 20, 1 << 26):
        acc, g = estimate(conv, [x[:1], x[1:]], diag_removal=diag, max_elems=max_elems)
        assert acc.max_elems == max_elems
        assert torch.equal(acc.hist, acc_ref.hist)
        assert torch.equal(acc.n_pairs, acc_ref.n_pairs)
        assert torch.equal(g, g_ref), max_elems


def test_autocorr_chunk_size_changes_at_most_the_last_bits():
    x = device_case_input(False, True)
    conv = nn.Conv2d(4, 3, (7, 7), padding=3)
    _, g_ref = estimate(conv, [x], method='autocorr', max_elems=None)
    for max_elems in (1, 4000, 1 << 26):
        _, g = estimate(conv, [x], method='autocorr', max_elems=max_elems)
        torch.testing.assert_close(g, g_ref, rtol=0, atol=1e-12)


def test_channels_last_input_gives_the_same_statistics():
    x = device_case_input(True, True)
    conv = nn.Conv2d(4, 3, (3, 3), padding=2, dilation=2)
    acc, g = estimate(conv, [x], diag_removal=True)
    acc_cl, g_cl = estimate(conv.to(memory_format=torch.channels_last),
                            [x.contiguous(memory_format=torch.channels_last)],
                            diag_removal=True)
    assert torch.equal(acc.hist, acc_cl.hist) and torch.equal(g, g_cl)


def test_int64_joint_index_when_int32_cannot_hold_it(monkeypatch):
    # the joint index c * nb² + bin_p * nb + bin_q is bounded by channels and
    # bins alone (2048 channels of 2**40 pairs: 3.4e6), never by the chunk size
    from sgs_mm.sgs import nmi
    assert nmi.joint_index_dtype(2048, 1 + 40) == torch.int32
    assert nmi.joint_index_dtype(2**20, 64) == torch.int64
    x = device_case_input(True, True)
    conv = nn.Conv2d(4, 3, (7, 7), padding=3)
    acc32, g32 = estimate(conv, [x], diag_removal=True)
    assert acc32.index_dtype == torch.int32
    monkeypatch.setattr(nmi, 'INT32_MAX', 10)
    acc64, g64 = estimate(conv, [x], diag_removal=True)
    assert acc64.index_dtype == torch.int64
    assert torch.equal(acc32.hist, acc64.hist) and torch.equal(g32, g64)


def test_input_on_another_device_is_moved_to_the_statistics_device():
    # stats on the CPU, input given as float64 on the CPU: only the device
    # matters here; on a GPU machine the CUDA tests below cover cuda inputs
    x = device_case_input(False, False)
    conv = nn.Conv2d(4, 3, 3, padding=1)
    geo = PairGeometry.from_conv(conv)
    acc = NMIStats(geo, 4, torch.device('cpu'))
    for pass_idx in range(acc.num_passes):
        acc.update(pass_idx, x.double())
        acc.end_pass(pass_idx)
    assert acc.hist.device.type == 'cpu' and int(acc.hist.sum()) > 0


@CUDA
@pytest.mark.parametrize('kernel,padding,dilation,diag,nonfinite', DEVICE_CASES)
def test_gpu_g_equals_cpu_g(kernel, padding, dilation, diag, nonfinite):
    x = device_case_input(diag, nonfinite, n=4)
    conv = nn.Conv2d(4, 3, kernel, padding=padding, dilation=dilation)
    acc_cpu, g_cpu = estimate(conv, [x[:1], x[1:]], diag_removal=diag, max_elems=None)
    for max_elems in (None, 4000):
        acc_gpu, g_gpu = estimate(conv, [x[:1], x[1:]], diag_removal=diag,
                                  max_elems=max_elems, device='cuda')
        assert acc_gpu.hist.is_cuda and g_gpu.is_cuda
        if max_elems is None:
            assert (1 << 20) <= acc_gpu.max_elems <= (1 << 26)
        # same bin of every pair: the counts are identical, only the entropy
        # sums may round differently
        assert torch.equal(acc_gpu.hist.cpu(), acc_cpu.hist)
        torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=0, atol=1e-9)


@CUDA
@pytest.mark.parametrize('nonfinite', [False, True])
def test_gpu_autocorr_equals_cpu(nonfinite):
    x = device_case_input(False, nonfinite, n=4)
    conv = nn.Conv2d(4, 3, (7, 7), padding=3)
    _, g_cpu = estimate(conv, [x], method='autocorr', max_elems=None)
    _, g_gpu = estimate(conv, [x], method='autocorr', max_elems=None, device='cuda')
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=0, atol=1e-9)


@CUDA
def test_gpu_channels_last_and_half_inputs():
    x = device_case_input(True, False, n=4)
    conv = nn.Conv2d(4, 3, (3, 3), padding=1)
    acc_cpu, g_cpu = estimate(conv, [x], diag_removal=True)
    acc_gpu, g_gpu = estimate(conv.to(memory_format=torch.channels_last),
                              [x.contiguous(memory_format=torch.channels_last)],
                              diag_removal=True, max_elems=None, device='cuda')
    assert torch.equal(acc_gpu.hist.cpu(), acc_cpu.hist)
    torch.testing.assert_close(g_gpu.cpu(), g_cpu, rtol=0, atol=1e-9)
    # fp16 inputs (an autocast refresh): same values as the CPU on the same fp16 data
    xh = x.half()
    _, g_cpu_h = estimate(conv.float(), [xh.float()], diag_removal=True)
    acc = NMIStats(PairGeometry.from_conv(conv), 4, 'cuda', None, diag_removal=True)
    for pass_idx in range(acc.num_passes):
        acc.update(pass_idx, xh.cuda())
        acc.end_pass(pass_idx)
    g_h = scaling_from_dependence(acc.dependence(), acc.geometry.displacements, (3, 3), 5.0)
    torch.testing.assert_close(g_h.cpu(), g_cpu_h, rtol=0, atol=1e-9)


# ------------------------------------------ the benchmark's baseline agrees
@pytest.mark.parametrize('kernel,padding,dilation,diag,nonfinite',
                         [c for c in DEVICE_CASES if not c[4]] + [((3, 3), 0, 1, False, False)])
def test_benchmark_reference_baseline_gives_our_g(kernel, padding, dilation, diag, nonfinite,
                                                  monkeypatch):
    # benchmarks/reference_baseline.py (the reference's algorithm binned with
    # fast_histogram, the speed baseline) computes the same G as sgs_mm
    pytest.importorskip('fast_histogram', reason='benchmark-only dependency '
                        '(pip install -r requirements/bench.txt)')
    from conftest import REPO_ROOT
    monkeypatch.syspath_prepend(str(REPO_ROOT / 'benchmarks'))
    from reference_baseline import reference_layer_scaling
    x = device_case_input(diag, nonfinite)
    x[:, 1] = 0.0  # a constant channel: NaN S (ignored), or 0 with diag_removal
    conv = nn.Conv2d(4, 3, kernel, padding=padding, dilation=dilation)
    acc, g = estimate(conv, [x], diag_removal=diag)
    xp = acc.geometry.pad(x).numpy()
    ref = reference_layer_scaling(xp, kernel, acc.geometry.step, diag_removal=diag)
    np.testing.assert_allclose(g.numpy(), ref, rtol=0, atol=1e-9)
