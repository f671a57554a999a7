"""API misuse of SpatialGradScaler (issue 23, item 7).

- ``refresh(loader)``: a DataLoader, a Dataset or any unsized iterable
  (iterator, generator, streaming loader) is refused with an error showing the
  ``itertools.islice`` form, before a single batch is drawn.
- ``state_dict()`` from another thread during refreshes (an asynchronous
  checkpoint writer): every snapshot is one refresh's G with its own count.
"""
import itertools
import threading
import time

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from sgs_mm.sgs import ScalingApplier, SpatialGradScaler


def smooth(n=4, c=3, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(n, c, size + 4, size + 4, generator=g), 5, 1, 0) * 3


class Counting(TensorDataset):
    """Counts the samples drawn from it."""
    drawn = 0

    def __getitem__(self, i):
        Counting.drawn += 1
        return super().__getitem__(i)


class Endless(IterableDataset):
    def __iter__(self):
        while True:
            yield smooth(n=1)[0]


@pytest.fixture
def sgs():
    return SpatialGradScaler(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)))


def test_refresh_refuses_a_dataloader_and_shows_islice(sgs):
    Counting.drawn = 0
    loader = DataLoader(Counting(smooth(n=32)), batch_size=2)
    with pytest.raises(ValueError, match=r'DataLoader.*itertools\.islice\(loader, 2\)'):
        sgs.refresh(loader)
    assert Counting.drawn == 0 and sgs.num_refreshes == 0
    with pytest.raises(ValueError, match='Counting'):
        sgs.refresh(loader.dataset)


@pytest.mark.timeout(60)  # an endless loader consumed whole would never return
@pytest.mark.parametrize('source', ['endless loader', 'generator', 'islice object'])
def test_refresh_refuses_unsized_iterables(sgs, source):
    if source == 'endless loader':  # iterating it would never return
        batches = DataLoader(Endless(), batch_size=2)
    elif source == 'generator':
        batches = (smooth(seed=i) for i in range(2))
    else:
        batches = itertools.islice(DataLoader(Endless(), batch_size=2), 2)
    with pytest.raises(ValueError, match=r'itertools\.islice'):
        sgs.refresh(batches)


def test_the_documented_form_works(sgs):
    loader = DataLoader(TensorDataset(smooth(n=32)), batch_size=2)
    report = sgs.refresh([x for x, in itertools.islice(loader, 2)])
    assert report.refresh == 1
    assert sgs.refresh((smooth(), smooth(seed=1))).refresh == 2  # a tuple is sized


@pytest.mark.parametrize('device', ['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
def test_state_dict_from_another_thread_is_one_refresh(device, monkeypatch):
    """A refresh publishes G layer by layer; a short pause after each layer's
    G (time.sleep releases the GIL) lets the snapshot thread run in the middle
    of that, as a busy machine does now and then. Every snapshot must equal
    the state published by the refresh its count names (bitwise: the same
    process copies the same tensors)."""
    real_set = ScalingApplier.set

    def slow_set(self, name, g):
        real_set(self, name, g)
        time.sleep(2e-4)
    monkeypatch.setattr(ScalingApplier, 'set', slow_set)
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(3, 3, 3, padding=1) for _ in range(8)]).to(device)
    sgs = SpatialGradScaler(net)
    batches = [[smooth(n=2, size=8, seed=s).to(device)] for s in range(4)]
    published = {0: sgs.state_dict()['scales']}
    snapshots = []
    done = threading.Event()

    def writer():
        while not done.is_set():
            snapshots.append(sgs.state_dict())
            time.sleep(0)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for b in batches:
            sgs.refresh(b)
            published[sgs.num_refreshes] = sgs.state_dict()['scales']
    finally:
        done.set()
        thread.join()
    assert len(snapshots) > 20
    mixed = [s['num_refreshes'] for s in snapshots
             if any(not torch.equal(g, published[s['num_refreshes']][n])
                    for n, g in s['scales'].items())]
    assert not mixed, f'{len(mixed)} of {len(snapshots)} snapshots mix two refreshes'


def test_hook_state_dict_from_another_thread_is_one_refresh(tmp_path, monkeypatch):
    """The hook's checkpoint state adds the schedule's step of the last refresh:
    it must belong to the same refresh as G and the count. A pause right
    after the engine published G (its self-check arming) opens the window."""
    from toy_runner import build_runner, sgs_hook
    runner = build_runner(tmp_path, hook=dict(type='SpatialGradScalingHook', interval=1,
                                              warmup=1, num_batches=1), max_epochs=1)
    runner.train()
    hook = sgs_hook(runner)
    real_arm = SpatialGradScaler._arm_check

    def slow_arm(self):
        real_arm(self)
        time.sleep(0.02)
    monkeypatch.setattr(SpatialGradScaler, '_arm_check', slow_arm)
    step_of = {}
    snapshots = []
    done = threading.Event()

    def writer():
        while not done.is_set():
            snapshots.append(hook.state_dict())
            time.sleep(0)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for step in range(100, 106):
            hook.refresh(runner, step)
            step_of[hook.num_refreshes] = step
    finally:
        done.set()
        thread.join()
    late = [s for s in snapshots if s['num_refreshes'] in step_of
            and s['last_refresh'] != step_of[s['num_refreshes']]]
    assert not late, f'{len(late)} of {len(snapshots)} snapshots name another refresh\'s step'
