"""Benchmark: an SGS refresh of a ResNet-50, against the reference algorithm, and
the train-step overhead of G.

In one run, on the same model and tensors (torchvision ResNet-50, its 17 KxK
convs, 2 batches of smooth random images):

  1. refresh time (collection forwards included) for a sweep of chunk sizes
     (``max_elems``) and the device default (None), with a check that G is
     bit-identical for every setting;
  2. estimators alone on the same captured layer inputs: sgs_mm (on the
     device) vs the baseline, the reference code's algorithm with its own
     histogram routine (``fast_histogram``, CPU, one thread; see
     reference_baseline.py), optionally the original reference code itself
     (``--original path/to/dependence.py``), and the max |G difference|; a
     NumPy loop cross-checks G on a slice of the inputs (not timed as a baseline);
  3. peak extra memory of a default refresh;
  4. train-step time with and without G, fp32 / bf16 autocast / fp16 autocast
     + GradScaler, channels_last.

    python benchmarks/bench_refresh.py --device cuda                  # GPU defaults
    python benchmarks/bench_refresh.py --device cpu --threads 1 --batch 32 --step-batch 8

Needs ``pip install -r requirements/bench.txt`` (fast-histogram) for the baseline.
"""
import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from loop_baseline import layer_scaling as numpy_loop_scaling  # noqa: E402
from reference_baseline import (capture_inputs, padded_cpu,  # noqa: E402
                                reference_layer_scaling, require_fast_histogram)
from sgs_mm.sgs import (NMIStats, PairGeometry, ScalingApplier, collect_dependence,  # noqa: E402
                        find_sgs_layers, scaling_from_dependence)
from sgs_mm.compat.versions import grad_scaler  # noqa: E402
from sgs_mm.sgs.chunking import resolve_max_elems  # noqa: E402
from sgs_mm.sgs.layers import named_weights  # noqa: E402

DEFAULTS = {
    # (refresh batch, estimator batch, sweep exponents, repeats, step reps, precisions)
    'cuda': dict(batch=256, est_batch=32, sweep='20,22,24,26', repeats=2, step_reps=20,
                 precisions='fp32,bf16,fp16'),
    'cpu': dict(batch=8, est_batch=None, sweep='18,20,22', repeats=1, step_reps=3,
                precisions='fp32,bf16'),
}


# ------------------------------------------------------------------ helpers
def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


STAT = statistics.median  # --timing min: the least disturbed run on a busy machine


def timed_median(fn, device, repeats):
    times, out = [], None
    for _ in range(max(1, repeats)):
        out, t = timed(fn, device)
        times.append(t)
    return out, STAT(times)


def interleaved(candidates, repeats):
    """Time each ``(label, fn, device)`` ``repeats`` times, round-robin, so a
    change of machine load hits every candidate alike; returns
    ``{label: (first output, statistic of the times)}``."""
    outs, times = {}, {label: [] for label, _, _ in candidates}
    for _ in range(max(1, repeats)):
        for label, fn, device in candidates:
            out, t = timed(fn, device)
            outs.setdefault(label, out)
            times[label].append(t)
    return {label: (outs[label], STAT(times[label])) for label, _, _ in candidates}


def chunk_label(max_elems):
    if max_elems is None:
        return 'None (default)'
    e = int(max_elems).bit_length() - 1
    return f'2^{e}' if 1 << e == max_elems else str(max_elems)


def load_avg():
    try:
        return '/'.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'n/a'


def peak_rss_bytes():
    """VmHWM: the process's peak resident memory since it started."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    return 0


def same_g(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)


def max_g_diff(ours, other):
    diffs = []
    for n, g in ours.items():
        o = other.get(n)
        if g is None or o is None:
            if (g is None) != (o is None):
                return float('inf')
            continue
        diffs.append(float((g.detach().cpu().double() - torch.as_tensor(o).double()).abs().max()))
    return max(diffs, default=0.0)


# ------------------------------------------------------------- estimators
def our_refresh(model, layers, geometries, batches, max_elems, diag_removal=False, k=5.0):
    """A refresh as the engine runs it: forwards with statistics collection
    (two passes for NMI), then G per layer."""
    stats = collect_dependence(
        layers, lambda n, c: NMIStats(geometries[n], c.in_channels, c.weight.device, max_elems,
                                      diag_removal=diag_removal),
        lambda: [model(x) for x in batches])
    return {n: scaling_from_dependence(s.dependence(), s.geometry.displacements,
                                       tuple(layers[n].kernel_size), k)
            for n, s in stats.items()}, stats


def our_estimator(inputs, layers, geometries, max_elems, device, diag_removal=False, k=5.0):
    """sgs_mm's estimator alone on already captured layer inputs (no forward)."""
    out = {}
    for name, conv in layers.items():
        acc = NMIStats(geometries[name], conv.in_channels, device, max_elems,
                       diag_removal=diag_removal)
        for pass_idx in range(acc.num_passes):
            for x in inputs[name]:
                acc.update(pass_idx, x)
            acc.end_pass(pass_idx)
        out[name] = scaling_from_dependence(acc.dependence(), acc.geometry.displacements,
                                            tuple(conv.kernel_size), k)
    return out


def reference_estimator(padded, layers, geometries, diag_removal=False, k=5.0):
    return {n: reference_layer_scaling(padded[n], tuple(layers[n].kernel_size),
                                       geometries[n].step, k, diag_removal)
            for n in layers}


def original_estimator(path, padded, layers, diag_removal=False, k=5.0):
    """The original reference code's per-layer function on the same padded inputs."""
    spec = importlib.util.spec_from_file_location('sgs_original_dependence', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = {}
    for n in layers:
        corr = mod.feature_map_nmik(torch.from_numpy(padded[n]), tuple(layers[n].kernel_size),
                                    k=k, diag_rem=diag_removal)
        g = corr / corr.mean()
        out[n] = None if torch.isnan(g).any() else g.double().numpy()
    return out


# -------------------------------------------------------------- train step
def train_step_times(model, applier, batch, target, device, precision, reps):
    """Median step time with and without G (interleaved, so drift hits both)."""
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    dtype = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}[precision]
    scaler = grad_scaler(device.type) if precision == 'fp16' else None

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(batch), target)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

    times = {'without': [], 'with': []}
    for _ in range(3 if device.type == 'cuda' else 1):  # warm-up (cuDNN autotuning, caches)
        step()
    for _ in range(reps):
        for key in ('without', 'with'):
            if key == 'with':
                applier.attach([opt])
            else:
                applier.detach()
            times[key].append(timed(step, device)[1])
    applier.detach()
    return {key: STAT(v) for key, v in times.items()}


# --------------------------------------------------------------- memory
def memory_probe(what, args):
    """Peak RSS of a fresh process that builds the same model and batches and
    runs only ``what`` ('forward' or 'refresh'); their difference is the
    refresh's extra peak, free of the allocator's reuse within one process."""
    cmd = [sys.executable, os.path.abspath(__file__), '--device', 'cpu',
           '--batch', str(args.batch), '--size', str(args.size),
           '--threads', str(args.threads or torch.get_num_threads()), '--probe', what]
    if args.diag_removal:
        cmd.append('--diag-removal')
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return int(out.strip().splitlines()[-1])


def make_batches(n, size, device, count=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth random images: neighbouring pixels are dependent, as in photos
    return [F.avg_pool2d(torch.randn(n, 3, size, size, generator=g), 5, 1, 2).to(device)
            for _ in range(count)]


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--batch', type=int, help='images per refresh batch (2 batches); '
                    'default 256 on cuda, 8 on cpu')
    ap.add_argument('--est-batch', type=int, help='images per batch of the captured inputs '
                    'the estimators are compared on (2 batches); default 32 on cuda, '
                    '--batch on cpu')
    ap.add_argument('--step-batch', type=int, help='train-step batch (default --batch)')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--sweep', help='max_elems exponents of the chunk sweep, comma separated '
                    '(default 20,22,24,26 on cuda, 18,20,22 on cpu); the default (None) '
                    'is always added')
    ap.add_argument('--repeats', type=int, help='timed runs per refresh/estimator setting '
                    '(median; default 2 on cuda, 1 on cpu)')
    ap.add_argument('--timing', choices=['median', 'min'], default='median',
                    help='statistic of the repeated timings (min on a busy machine)')
    ap.add_argument('--step-reps', type=int, help='timed train steps per variant (median; '
                    'default 20 on cuda, 3 on cpu)')
    ap.add_argument('--precisions', help='train-step precisions among fp32,bf16,fp16 '
                    '(default all three on cuda, fp32,bf16 on cpu); fp16 uses GradScaler')
    ap.add_argument('--no-channels-last', action='store_true',
                    help='train steps in NCHW instead of channels_last')
    ap.add_argument('--diag-removal', action='store_true', help='the ImageNet NMI variant')
    ap.add_argument('--original', metavar='DEPENDENCE_PY',
                    help="also time the original reference code's feature_map_nmik "
                    '(path to Ascend-Research/Reparameterization dependence.py)')
    ap.add_argument('--check-samples', type=int, default=2,
                    help='images per batch the NumPy loop cross-checks G on (0: skip)')
    ap.add_argument('--skip-sweep', action='store_true')
    ap.add_argument('--skip-baseline', action='store_true')
    ap.add_argument('--skip-memory', action='store_true')
    ap.add_argument('--skip-train', action='store_true')
    ap.add_argument('--json', metavar='PATH', help='also write the results as JSON')
    ap.add_argument('--threads', type=int, default=None,
                    help="torch CPU threads (default: torch's; use 1 on a busy machine, "
                    'where OpenMP threads waiting for a core slow small ops down a lot)')
    ap.add_argument('--probe', choices=['forward', 'refresh'], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    d = DEFAULTS['cuda' if device.type == 'cuda' else 'cpu']
    args.batch = args.batch or d['batch']
    args.est_batch = args.est_batch or d['est_batch'] or args.batch
    args.step_batch = args.step_batch or args.batch
    args.sweep = [1 << int(e) for e in (args.sweep or d['sweep']).split(',') if e]
    args.repeats = args.repeats or d['repeats']
    args.step_reps = args.step_reps or d['step_reps']
    args.precisions = (args.precisions or d['precisions']).split(',')
    return args, device


def main(argv=None):
    global STAT
    args, device = parse_args(argv)
    STAT = min if args.timing == 'min' else statistics.median
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).to(device).eval()
    layers, *_ = find_sgs_layers(model)
    geometries = {n: PairGeometry.from_conv(c) for n, c in layers.items()}
    diag = args.diag_removal
    if args.probe:
        batches = make_batches(args.batch, args.size, device)
        with torch.no_grad():
            if args.probe == 'forward':
                for _ in range(2):
                    for x in batches:
                        model(x)
            else:
                our_refresh(model, layers, geometries, batches, None, diag)
        print(peak_rss_bytes())
        return
    if not args.skip_baseline:
        require_fast_histogram()
    res = {'device': str(device), 'torch': torch.__version__, 'threads': torch.get_num_threads(),
           'batch': args.batch, 'est_batch': args.est_batch, 'size': args.size,
           'diag_removal': diag, 'load_before': load_avg()}
    where = (torch.cuda.get_device_name(device) if device.type == 'cuda'
             else f'CPU, {torch.get_num_threads()} torch threads')
    res['where'] = where
    default_elems = resolve_max_elems(None, device)
    print(f'ResNet-50, {len(layers)} SGS convs, size {args.size}, diag_removal={diag}; '
          f'{where}; torch {torch.__version__}; load average {res["load_before"]}; '
          f'timings: {args.timing} of {args.repeats}')
    print(f'default chunk (max_elems=None) on {device}: {chunk_label(default_elems)}')

    # ------------------------------------------------ 1. refresh, chunk sweep
    batches = make_batches(args.batch, args.size, device)
    with torch.no_grad():
        timed(lambda: [model(x) for x in batches], device)  # warm-up
        _, t_fwd = timed_median(lambda: [model(x) for x in batches for _ in range(2)],
                                device, args.repeats)
    res['forwards_s'] = t_fwd
    if not args.skip_sweep:
        print(f'\n## 1. Refresh of 2 x {args.batch} images (2 collection passes: forwards '
              f'{t_fwd:.2f} s of it), by chunk size')
        if device.type == 'cuda':  # warm-up: allocator, kernels
            our_refresh(model, layers, geometries, batches, None, diag)
        settings = list(args.sweep) + [None]
        timed_runs = interleaved(
            [(me, lambda me=me: our_refresh(model, layers, geometries, batches, me, diag)[0],
              device) for me in settings], args.repeats)
        ref_g = timed_runs[settings[0]][0]
        rows = [(me, t, same_g(g, ref_g)) for me, (g, t) in timed_runs.items()]
        best = min(t for _, t, _ in rows)
        print('| max_elems | refresh | vs fastest | G identical to the first |')
        print('|---|---|---|---|')
        for me, t, same in rows:
            label = chunk_label(me) + (f' = {chunk_label(default_elems)}' if me is None else '')
            print(f'| {label} | {t:.2f} s | {t / best:.2f}x | {"yes" if same else "NO"} |')
        res['sweep'] = [{'max_elems': me, 'resolved': me or default_elems, 'seconds': t,
                         'g_identical': same} for me, t, same in rows]
        ref_g = None

    # ------------------------------ 2. estimators on the same captured inputs
    est_batches = make_batches(args.est_batch, args.size, device, seed=1)
    inputs = capture_inputs(model, layers, est_batches)
    print(f'\n## 2. Estimators alone, same captured inputs of 2 x {args.est_batch} images')
    settings = [None] + [me for me in args.sweep if me != default_elems]
    if device.type == 'cuda':  # warm-up
        our_estimator(inputs, layers, geometries, None, device, diag)
    cpu = torch.device('cpu')
    cands = []
    for me in settings:
        label = f'sgs_mm on {device.type}, max_elems {chunk_label(me)}' + (
            f' = {chunk_label(default_elems)}' if me is None else '')
        cands.append((label, lambda me=me: our_estimator(inputs, layers, geometries, me, device,
                                                         diag), device))
    ours_label = cands[0][0]
    if device.type == 'cuda':
        cpu_inputs = {n: [x.cpu() for x in xs] for n, xs in inputs.items()}
        cands.append((f'sgs_mm on cpu ({torch.get_num_threads()} threads), default chunk',
                      lambda: our_estimator(cpu_inputs, layers, geometries, None, cpu, diag), cpu))
    diffs = {}
    base_label = 'reference algorithm, fast_histogram (CPU, 1 thread): baseline'
    orig_label = 'original reference code (CPU, 1 thread)'
    if not args.skip_baseline:
        # the reference's capture: forward, pad, copy to the CPU as float32
        padded, t_cap = timed(lambda: capture_inputs(model, layers, est_batches,
                                                     padded_cpu(geometries)), device)
        padded = {n: np.concatenate(v) for n, v in padded.items()}
        held = sum(a.nbytes for a in padded.values())
        res['reference_capture_s'] = t_cap
        res['reference_held_MiB'] = held / 2**20
        cands.append((base_label, lambda: reference_estimator(padded, layers, geometries, diag),
                      cpu))
        if args.original:
            cands.append((orig_label,
                          lambda: original_estimator(args.original, padded, layers, diag), cpu))
    results = interleaved(cands, args.repeats)
    inputs = cpu_inputs = padded = None
    ours_g = results[ours_label][0]
    t_ref = results[base_label][1] if base_label in results else None
    if base_label in results:
        diffs['reference (fast_histogram)'] = max_g_diff(ours_g, results[base_label][0])
    if orig_label in results:
        diffs['original reference code'] = max_g_diff(ours_g, results[orig_label][0])
    est_rows = [(label, t) for label, (_, t) in results.items()]
    print('| estimator | time | speed-up vs baseline |')
    print('|---|---|---|')
    for label, t in est_rows:
        ratio = f'{t_ref / t:.1f}x' if t_ref else 'n/a'
        print(f'| {label} | {t:.2f} s | {ratio} |')
    res['estimators'] = [{'what': label, 'seconds': t} for label, t in est_rows]
    if not args.skip_baseline:
        print(f'reference capture (forward + pad + copy to CPU): {t_cap:.2f} s; it keeps every '
              f'layer\'s padded input: {held / 2**20:.0f} MiB for 2 x {args.est_batch} images')
    if args.check_samples:
        m = args.check_samples
        sub = capture_inputs(model, layers, [x[:m] for x in est_batches])
        g_sub = our_estimator(sub, layers, geometries, None, device, diag)
        loop_g = {n: numpy_loop_scaling(
            np.concatenate([geometries[n].pad(x).cpu().double().numpy() for x in sub[n]]),
            tuple(layers[n].kernel_size), geometries[n].step, diag_removal=diag)
            for n in layers}
        diffs[f'NumPy loop cross-check (2 x {m} images)'] = max_g_diff(g_sub, loop_g)
        sub = None
    for what, d in diffs.items():
        print(f'max |G_sgs_mm - G| vs {what}: {d:.1e}')
    res['max_g_diff'] = diffs
    est_batches = None
    if device.type == 'cuda':
        torch.cuda.empty_cache()

    # ------------------------------------------------------------ 3. memory
    if not args.skip_memory:
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            with torch.no_grad():
                for x in batches:
                    model(x)
            fwd_peak = torch.cuda.max_memory_allocated(device) - base
            torch.cuda.reset_peak_memory_stats(device)
            our_refresh(model, layers, geometries, batches, None, diag)
            peak = torch.cuda.max_memory_allocated(device) - base
            what = 'GPU memory allocated'
        else:
            fwd_peak, peak = memory_probe('forward', args), memory_probe('refresh', args)
            what = 'process peak RSS'
        print(f'\n## 3. Memory of a default refresh (2 x {args.batch})\n{what}: refresh '
              f'{peak / 2**20:.0f} MiB vs the same forwards alone {fwd_peak / 2**20:.0f} MiB: '
              f'{(peak - fwd_peak) / 2**20:+.0f} MiB')
        res['memory'] = {'what': what, 'refresh_MiB': peak / 2**20,
                         'forwards_MiB': fwd_peak / 2**20}

    # -------------------------------------------------------- 4. train step
    if not args.skip_train:
        g_now, _ = our_refresh(model, layers, geometries, batches, None, diag)
        fmt = torch.contiguous_format if args.no_channels_last else torch.channels_last
        model.train().to(memory_format=fmt)
        applier = ScalingApplier(named_weights(layers), 'grad')
        for n, gn in g_now.items():
            if gn is not None:
                applier.set(n, gn)
        step_batch = make_batches(args.step_batch, args.size, device, count=1, seed=2)[0]
        step_batch = step_batch.contiguous(memory_format=fmt)
        target = torch.randint(0, 1000, (args.step_batch, ),
                               generator=torch.Generator().manual_seed(3)).to(device)
        batches = None
        print(f'\n## 4. Train step, batch {args.step_batch}, '
              f'{"NCHW" if args.no_channels_last else "channels_last"}, SGD momentum + wd '
              f'({args.timing} of {args.step_reps}, interleaved)')
        print('| precision | without G | with G | overhead |')
        print('|---|---|---|---|')
        res['train'] = []
        for prec in args.precisions:
            times = train_step_times(model, applier, step_batch, target, device, prec,
                                     args.step_reps)
            overhead = (times['with'] - times['without']) / times['without'] * 100
            label = {'fp32': 'fp32', 'bf16': 'bf16 autocast',
                     'fp16': 'fp16 autocast + GradScaler'}[prec]
            print(f"| {label} | {times['without'] * 1000:.1f} ms | {times['with'] * 1000:.1f} ms "
                  f'| {overhead:+.2f}% |')
            res['train'].append({'precision': prec, **times, 'overhead_pct': overhead})
    res['load_after'] = load_avg()
    print(f'\nload average at the end: {res["load_after"]}')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(res, f, indent=1, default=str)


if __name__ == '__main__':
    main()
