"""Benchmark: one SGS refresh of a ResNet-50 and the gradient-scaling overhead.

In one run, on the same tensors:
  1. refresh time of sgs_mm's vectorised estimator (2 forward passes included)
     vs the per-channel loop (1 capturing forward + NumPy loop), and the
     largest |G difference| between them;
  2. peak extra memory of our refresh (RSS sampled every 2 ms, CPU; CUDA
     max_memory_allocated on GPU) vs the largest layer input + histograms;
  3. train-step time (SGD, momentum, wd) with vs without gradient scaling.

    python benchmarks/bench_refresh.py [--batch 8] [--size 224] [--device cpu]
"""
import argparse
import os
import statistics
import sys
import threading
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from loop_baseline import capture_inputs, layer_scaling, padded_numpy  # noqa: E402
from sgs_mm.sgs import (NMIStats, PairGeometry, ScalingApplier, collect_dependence,  # noqa: E402
                        find_sgs_layers, scaling_from_dependence)
from sgs_mm.sgs.layers import named_weights  # noqa: E402


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def peak_rss_bytes():
    """VmHWM: the process's peak resident memory since it started."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return 0


def memory_probe(what, args):
    """Peak RSS of a fresh process that builds the same model and batches and
    runs only ``what`` ('forward' or 'refresh'); their difference is the
    refresh's extra peak, free of the allocator's reuse within one process."""
    import subprocess
    cmd = [sys.executable, __file__, '--batch', str(args.batch), '--size', str(args.size),
           '--threads', str(args.threads or torch.get_num_threads()), '--probe', what]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


class PeakRSS:
    """Peak resident memory above the level at entry, sampled in a thread."""

    def __enter__(self):
        self.base = self.peak = rss_bytes()
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop = True
        self._t.join()
        self.extra = self.peak - self.base


def our_refresh(model, layers, batches, geometries, k=5.0):
    stats = collect_dependence(
        layers, lambda n, c: NMIStats(geometries[n], c.in_channels, c.weight.device),
        lambda: [model(x) for x in batches])
    return {n: scaling_from_dependence(s.dependence(), s.geometry.displacements,
                                       tuple(layers[n].kernel_size), k)
            for n, s in stats.items()}, stats


def our_estimator(inputs, layers, geometries, k=5.0):
    """Our estimator alone on already captured layer inputs (no forward)."""
    out = {}
    for name, conv in layers.items():
        acc = NMIStats(geometries[name], conv.in_channels, conv.weight.device)
        for pass_idx in range(acc.num_passes):
            for x in inputs[name]:
                acc.update(pass_idx, x)
            acc.end_pass(pass_idx)
        out[name] = scaling_from_dependence(acc.dependence(), acc.geometry.displacements,
                                            tuple(conv.kernel_size), k)
    return out


def loop_refresh(model, layers, batches, geometries, k=5.0):
    feats = capture_inputs(model, layers, batches, padded_numpy(geometries))
    return {n: layer_scaling(np.concatenate(feats[n]), tuple(layers[n].kernel_size),
                             geometries[n].step, k)
            for n in layers}


def timed(fn, device):
    if device.type == 'cuda':
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    return out, time.perf_counter() - t


def train_step_times(model, applier, batch, target, device, reps):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    times = {'without': [], 'with': []}

    def step():
        opt.zero_grad()
        F.cross_entropy(model(batch), target).backward()
        opt.step()

    step()  # warm-up
    for _ in range(reps):  # interleaved, so drift hits both equally
        for key in ('without', 'with'):
            applier.attach() if key == 'with' else applier.detach()
            times[key].append(timed(step, device)[1])
    applier.detach()
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--batch', type=int, default=8, help='images per batch (2 batches)')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--step-reps', type=int, default=5)
    ap.add_argument('--skip-loop', action='store_true', help='skip the slow loop baseline')
    ap.add_argument('--probe', choices=['forward', 'refresh'], help=argparse.SUPPRESS)
    ap.add_argument('--threads', type=int, default=None,
                    help='torch CPU threads (default: torch\'s; use 1 on a busy machine, '
                    'where OpenMP threads waiting for a core slow small ops down a lot)')
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).to(device).eval()
    layers, _ = find_sgs_layers(model)
    geometries = {n: PairGeometry.from_conv(c) for n, c in layers.items()}
    g = torch.Generator().manual_seed(0)
    # smooth random images: neighbouring pixels are dependent, as in photos
    batches = [F.avg_pool2d(torch.randn(args.batch, 3, args.size, args.size, generator=g),
                            5, 1, 2).to(device) for _ in range(2)]
    if args.probe:
        with torch.no_grad():
            if args.probe == 'forward':
                for _ in range(2):
                    for x in batches:
                        model(x)
            else:
                our_refresh(model, layers, batches, geometries)
        print(peak_rss_bytes())
        return
    print(f'ResNet-50, {len(layers)} SGS convs, 2 batches of {args.batch}x3x{args.size}x'
          f'{args.size}, device {device}, torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads')

    with torch.no_grad():
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            for x in batches:
                model(x)
            fwd_peak = torch.cuda.max_memory_allocated() - base
            torch.cuda.reset_peak_memory_stats()
        (ours, stats), t_ours = timed(
            lambda: our_refresh(model, layers, batches, geometries), device)
        if device.type == 'cuda':
            peak = torch.cuda.max_memory_allocated() - base
        else:
            fwd_peak, peak = memory_probe('forward', args), memory_probe('refresh', args)
        extra = peak - fwd_peak
    sizes = capture_inputs(model, layers, batches[:1],
                           lambda n, x: x.numel() * x.element_size())
    largest = max(sum(v) for v in sizes.values())
    hist_bytes = sum(s.hist.numel() * s.hist.element_size() for s in stats.values())
    what = 'GPU memory' if device.type == 'cuda' else 'process peak RSS'
    print(f'ours: refresh {t_ours:.2f} s; {what}: refresh {peak / 2**20:.0f} MiB vs the same '
          f'forwards alone {fwd_peak / 2**20:.0f} MiB: {extra / 2**20:+.0f} MiB (bound: largest '
          f'layer input {largest / 2**20:.0f} MiB per batch + all histograms '
          f'{hist_bytes / 2**20:.0f} MiB)')
    # same inputs, estimators alone
    inputs = capture_inputs(model, layers, batches)
    _, t_est = timed(lambda: our_estimator(inputs, layers, geometries), device)
    print(f'estimator only (captured inputs, no forward): ours {t_est:.2f} s')
    if not args.skip_loop:
        keep = padded_numpy(geometries)
        padded = {n: np.concatenate([keep(n, x) for x in xs]) for n, xs in inputs.items()}
        t = time.perf_counter()
        for n in layers:
            layer_scaling(padded[n], tuple(layers[n].kernel_size), geometries[n].step)
        t_est_loop = time.perf_counter() - t
        print(f'estimator only, same inputs: loop {t_est_loop:.2f} s, speed-up '
              f'{t_est_loop / t_est:.1f}x')
        del padded
    inputs.clear()
    if not args.skip_loop:
        with PeakRSS() as mem_loop:
            loop, t_loop = timed(lambda: loop_refresh(model, layers, batches, geometries),
                                 device)
        # the loop keeps every layer's input: its peak grows by all of them
        diff = max(float((ours[n].cpu().double() - torch.as_tensor(loop[n])).abs().max())
                   for n in layers)
        print(f'loop: refresh {t_loop:.2f} s; resident memory grew by '
              f'{mem_loop.extra / 2**20:.0f} MiB during it (every layer\'s input is kept)')
        print(f'speed-up {t_loop / t_ours:.1f}x; max |G_ours - G_loop| = {diff:.2e}')

    model.train()
    applier = ScalingApplier(named_weights(layers), 'grad')
    for n, gn in ours.items():
        applier.set(n, gn)
    target = torch.randint(0, 1000, (args.batch, ), generator=g).to(device)
    times = train_step_times(model, applier, batches[0], target, device, args.step_reps)
    overhead = (times['with'] - times['without']) / times['without'] * 100
    print(f"train step: without SGS {times['without'] * 1000:.1f} ms, with SGS "
          f"{times['with'] * 1000:.1f} ms (median of {args.step_reps}); overhead "
          f'{overhead:+.2f}%')


if __name__ == '__main__':
    main()
