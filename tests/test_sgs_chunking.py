"""The chunk size of the estimators (sgs_mm.sgs.chunking): the device rule, its
cap, explicit values, and the bytes-per-element figure the CUDA rule relies on."""
import math
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sgs_mm.sgs import AutocorrStats, NMIStats, PairGeometry, half_window
from sgs_mm.sgs.chunking import (BYTES_PER_ELEM, CPU_MAX_ELEMS, CUDA_MAX_ELEMS,
                                 CUDA_MEMORY_FRACTION, MIN_ELEMS, chunk_elems_for_memory,
                                 resolve_max_elems)

GiB = 1 << 30


def test_constants_are_the_documented_ones():
    assert CPU_MAX_ELEMS == MIN_ELEMS == 1 << 20
    assert CUDA_MAX_ELEMS == 1 << 26
    assert BYTES_PER_ELEM == 48 and CUDA_MEMORY_FRACTION == 0.25


@pytest.mark.parametrize('device', ['cpu', torch.device('cpu'), 'meta', 'mps'])
def test_non_cuda_devices_get_the_cpu_chunk(device):
    assert resolve_max_elems(None, device) == 1 << 20


@pytest.mark.parametrize('device', ['cpu', 'cuda', 'cuda:1'])
@pytest.mark.parametrize('value', [1, 100, 1 << 20, 3 << 22, 1 << 30])
def test_an_explicit_integer_wins(device, value):
    # never asks the device: works for 'cuda' on a machine without one
    assert resolve_max_elems(value, device) == value
    assert resolve_max_elems(value, device, available_bytes=0) == value


@pytest.mark.parametrize('bad', [0, -1, 1.5, 2.0**20, True, '1048576'])
def test_invalid_values_are_refused(bad):
    with pytest.raises(ValueError, match='max_elems'):
        resolve_max_elems(bad, 'cpu')


@pytest.mark.parametrize('available,expected', [
    (0, 1 << 20),
    (float('nan'), 1 << 20),
    (-5, 1 << 20),
    (GiB // 8, 1 << 20),      # a nearly full card never goes below 2**20
    (GiB // 2, 1 << 21),      # 0.5 GiB / 4 / 48 B = 2.8 M -> 2**21
    (GiB, 1 << 22),           # 1 GiB / 4 / 48 B = 5.6 M -> 2**22
    (4 * GiB, 1 << 24),       # 22.4 M -> 2**24
    (8 * GiB, 1 << 25),       # 44.7 M -> 2**25
    (12 * GiB - 1, 1 << 25),  # just under the cap's need
    (12 * GiB, 1 << 26),      # exactly 2**26 * 48 B / 0.25
    (75 * GiB, 1 << 26),      # an idle H100 (80 GB): capped
    (139 * GiB, 1 << 26),     # an idle H200: capped (best of the H200 table)
    (10**15, 1 << 26),
])
def test_cuda_rule_with_injected_free_memory(available, expected):
    assert resolve_max_elems(None, 'cuda', available_bytes=available) == expected
    assert resolve_max_elems(None, torch.device('cuda', 3), available_bytes=available) == expected


def test_cuda_rule_is_a_monotone_power_of_two_within_the_budget():
    last = 0
    for i in range(0, 400):
        available = int(1.1**i * 1e6)
        elems = chunk_elems_for_memory(available)
        assert elems & (elems - 1) == 0 and MIN_ELEMS <= elems <= CUDA_MAX_ELEMS
        assert elems >= last
        last = elems
        if elems > MIN_ELEMS:  # above the floor, temporaries stay within the fraction
            assert elems * BYTES_PER_ELEM <= CUDA_MEMORY_FRACTION * available
        budget = available * CUDA_MEMORY_FRACTION
        if elems < CUDA_MAX_ELEMS and budget >= MIN_ELEMS * BYTES_PER_ELEM:
            # and the next power of two would not fit
            assert 2 * elems * BYTES_PER_ELEM > CUDA_MEMORY_FRACTION * available


def test_stats_resolve_their_default_from_the_device():
    geo = PairGeometry((3, 3), (1, 1, 1, 1), (1, 1), tuple(half_window((3, 3))))
    assert NMIStats(geo, 2, 'cpu').max_elems == 1 << 20
    assert NMIStats(geo, 2, 'cpu', None, diag_removal=True).max_elems == 1 << 20
    assert AutocorrStats(geo, 2, 'cpu').max_elems == 1 << 20
    assert NMIStats(geo, 2, 'cpu', 12345).max_elems == 12345
    with pytest.raises(ValueError, match='max_elems'):
        AutocorrStats(geo, 2, 'cpu', 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_default_reads_the_device_memory():
    from sgs_mm.sgs.chunking import cuda_available_bytes
    dev = torch.device('cuda', torch.cuda.current_device())
    available = cuda_available_bytes(dev)
    free, total = torch.cuda.mem_get_info(dev)
    assert free <= available <= total
    geo = PairGeometry((3, 3), (1, 1, 1, 1), (1, 1), tuple(half_window((3, 3))))
    acc = NMIStats(geo, 2, dev)
    assert acc.max_elems == chunk_elems_for_memory(available)
    assert NMIStats(geo, 2, 'cuda').max_elems == acc.max_elems  # index-less 'cuda'


# ------------------------------------------------- the bytes-per-element figure
class _PeakBytes(TorchDispatchMode):
    """Peak bytes of the storages created by ops inside the mode and still
    alive (inputs and views of existing storages are not counted)."""

    def __init__(self):
        super().__init__()
        self.live = {}
        self.cur = self.peak = 0

    def _release(self, key):
        entry = self.live[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.cur -= entry[1]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr()
                  for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage().data_ptr()
            if key == 0 or (key not in self.live and key in inputs):
                continue
            if key not in self.live:
                self.live[key] = [0, t.untyped_storage().nbytes()]
                self.cur += self.live[key][1]
                self.peak = max(self.peak, self.cur)
            self.live[key][0] += 1
            weakref.finalize(t, self._release, key)
        return out


def _peak_per_elem(acc, x, pass_idx):
    pad = acc.geometry.padding
    elems = x.shape[0] * x.shape[1] * (x.shape[2] + pad[0] + pad[1]) * (x.shape[3] + pad[2] +
                                                                        pad[3])
    with _PeakBytes() as probe:
        acc.update(pass_idx, x)
    return probe.peak / elems


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('n', [1, 4])
@pytest.mark.parametrize('method,case', [
    ('nmi', 'plain'), ('nmi', 'diag'), ('nmi', 'nonfinite'), ('nmi', 'own_bins'), ('nmi', 'all'),
    ('autocorr', 'plain'), ('autocorr', 'nonfinite')])
def test_temporaries_stay_within_bytes_per_elem(method, case, n, dtype):
    # what the CUDA rule assumes: a chunk of E padded elements creates at most
    # BYTES_PER_ELEM * E bytes of temporaries (measured on the CPU: the same
    # ops allocate the same tensors on a GPU)
    x = F.avg_pool2d(torch.randn(n, 16, 20, 20, generator=torch.Generator().manual_seed(0)),
                     5, 1, 2)
    if case in ('diag', 'all'):
        x = F.relu(x)
    if case in ('nonfinite', 'all'):
        x[0, 0, 3, 3] = math.nan
        x[-1, 1, 4, 4] = math.inf
    if case in ('own_bins', 'all'):
        # extremes on the border: per-displacement ranges differ from the map's
        x[-1, 0, -1, 4] = 50.0
        x[0, 3, 0, 0] = -50.0
    x = x.to(dtype)
    pad = 0 if case == 'own_bins' else 1
    geo = PairGeometry((3, 3), (pad, ) * 4, (1, 1), tuple(half_window((3, 3))))
    if method == 'nmi':
        acc = NMIStats(geo, 16, 'cpu', 1 << 26, diag_removal=case in ('diag', 'all'))
    else:
        acc = AutocorrStats(geo, 16, 'cpu', 1 << 26)
    peaks = []
    for pass_idx in range(acc.num_passes):
        peaks.append(_peak_per_elem(acc, x, pass_idx))
        acc.end_pass(pass_idx)
    if case == 'own_bins':  # the case really mixes shared and own bin indices
        match = torch.cat([acc.match_p, acc.match_q])
        assert bool((match.any(1) & ~match.all(1)).any())
    assert max(peaks) <= BYTES_PER_ELEM, peaks
    assert max(peaks) >= 4  # the probe sees at least the padded copy


def test_sturges_bins_are_exact_integers():
    from sgs_mm.sgs.nmi import sturges_bins
    ns = [0, 1, 2, 3, 4, 5, 7, 8, 9, 1023, 1024, 1025]
    for k in (20, 26, 31, 40, 48, 52, 60):
        ns += [2**k - 1, 2**k, 2**k + 1]
    got = sturges_bins(torch.tensor(ns, dtype=torch.int64)).tolist()
    assert got == [0 if n == 0 else 1 + (n - 1).bit_length() for n in ns]
    assert sturges_bins(torch.tensor([[2048, 3], [0, 1]])).tolist() == [[12, 3], [0, 1]]
