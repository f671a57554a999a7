"""Benchmark: the training cost of SGS and of structural reparameterization
(ACB, RepVGG, DBB) against plain training, side by side in one run.

For each model (mmpretrain ResNet-18 / ResNet-50 backbone + global pooling +
a 1000-class linear layer) and each arm it reports, as ratios to plain:

* train-step time (forward, backward, SGD with momentum, Nesterov and weight
  decay as the paper's recipe), median of ``--steps`` timed steps after
  warm-up, on fixed synthetic images (``--clock cpu``, the CPU default: the
  process's CPU time, which on a shared machine counts the work and not the
  wait for a core);
  SGS: the step with G applied plus its refresh amortised at the paper's
  ImageNet schedule (a refresh from 2 batches after a 1-epoch warm-up and
  every 5 epochs, 120 epochs of 5004 iterations per GPU: 24 refreshes in
  600480 steps), the refresh timed here on 2 batches of the same size;
* peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed
  steps (weights, gradients, optimizer state, activations); on the CPU the
  process's peak resident memory (VmHWM, reset through
  ``/proc/self/clear_refs`` after the warm-up) over the timed steps minus its
  resident memory before the first step (libraries, weights and batch):
  optimizer state, gradients, activations and the allocator's cache, not
  comparable to the CUDA figure;
* trained parameters (the branched blocks' while training; every arm
  deploys the plain ResNet's parameters).

Each (model, arm) runs in a fresh process, so that memory figures do not
carry over; the arms of a model run one after the other (``--rounds N``
repeats the whole sweep and keeps each arm's fastest median, for busy
machines).

    python benchmarks/bench_reparam.py --device cuda                   # batch 32
    python benchmarks/bench_reparam.py --device cpu --threads 2 --batch 4 --steps 2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

ARMS = ('plain', 'sgs', 'acb', 'repvgg', 'dbb')
PAPER_R18_GPU_DAYS = {'plain': 4.8, 'sgs': 5.1, 'dbb': 8.1}  # PAPER.md Table 2, 8 V100


# ----------------------------------------------------------------- schedule
def refresh_count(epochs: int, warmup: int, interval: int) -> int:
    """Refreshes of the paper's schedule: at epoch ``warmup``, then at every
    later epoch divisible by ``interval`` (SGS_SPEC §5)."""
    return sum(1 for e in range(epochs) if e == warmup or (e > warmup and e % interval == 0))


# -------------------------------------------------------------------- model
class Classifier(nn.Module):
    """mmpretrain ResNet backbone + global average pooling + linear head."""

    def __init__(self, depth: int):
        super().__init__()
        from mmpretrain.models.backbones import ResNet
        self.backbone = ResNet(depth=depth, zero_init_residual=False)
        self.head = nn.Linear(512 if depth < 50 else 2048, 1000)

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean(dim=(2, 3)))


def build_arm(depth: int, arm: str, device: torch.device):
    """The model of ``arm`` on ``device`` and, for SGS, its scaler."""
    model = Classifier(depth)
    scaler = None
    if arm in ('acb', 'repvgg', 'dbb'):
        from sgs_mm.reparam import to_branches
        to_branches(model.backbone, arm)
    model.to(device).train()
    if arm == 'sgs':
        from sgs_mm.sgs import SpatialGradScaler
        scaler = SpatialGradScaler(model, k=5, diag_removal=True)  # the ImageNet setting
    return model, scaler


# ------------------------------------------------------------------ helpers
def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def vm_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def load_avg() -> str:
    try:
        return '/'.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return 'n/a'


# -------------------------------------------------------------------- probe
def probe(args) -> dict:
    """One (model, arm) in this process: step time, peak memory, params."""
    depth, arm = int(args.probe.split(':')[0]), args.probe.split(':')[1]
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, scaler = build_arm(depth, arm, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4,
                          nesterov=True)
    if scaler is not None:
        scaler.attach(opt)
    g = torch.Generator().manual_seed(0)
    # smooth random images (neighbouring pixels dependent, as in photos)
    images = [F.avg_pool2d(torch.randn(args.batch, 3, args.size, args.size, generator=g),
                           5, 1, 2).to(device) for _ in range(2)]
    target = torch.randint(0, 1000, (args.batch, ), generator=g).to(device)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images[0]), target).backward()
        opt.step()

    out = dict(model=f'ResNet-{depth}', arm=arm,
               params=sum(p.numel() for p in model.parameters() if p.requires_grad))
    rss_before = vm_kib('VmRSS') * 1024
    if scaler is not None:  # a first refresh, so that G is not all ones
        scaler.refresh(images)
    for _ in range(args.warmup):
        step()
    sync(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    out['rss_reset'] = reset_peak_rss() if device.type == 'cpu' else None
    clock = time.process_time if args.clock == 'cpu' else time.perf_counter
    times = []
    for _ in range(args.steps):
        sync(device)
        t = clock()
        step()
        sync(device)
        times.append(clock() - t)
    out['step_s'] = statistics.median(times)
    out['peak_bytes'] = (torch.cuda.max_memory_allocated(device) if device.type == 'cuda'
                         else vm_kib('VmHWM') * 1024 - rss_before)
    if scaler is not None:
        sync(device)
        t = clock()
        scaler.refresh(images)  # 2 batches, as the paper's num_batches
        sync(device)
        out['refresh_s'] = clock() - t
    return out


def run_probe(args, depth: int, arm: str) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), '--probe', f'{depth}:{arm}',
           '--device', args.device, '--batch', str(args.batch), '--size', str(args.size),
           '--steps', str(args.steps), '--warmup', str(args.warmup), '--clock', args.clock]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f'probe {depth}:{arm} failed:\n{res.stderr[-3000:]}')
    return json.loads(res.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------- main
def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    ap.add_argument('--batch', type=int, help='images per step (default: the paper\'s per-GPU '
                    'batch 32 on CUDA, 8 on the CPU)')
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--steps', type=int, help='timed steps per arm (default 20 CUDA, 3 CPU)')
    ap.add_argument('--warmup', type=int, help='untimed steps first (default 5 CUDA, 1 CPU)')
    ap.add_argument('--models', default='18,50', help='ResNet depths, comma separated')
    ap.add_argument('--arms', default=','.join(ARMS), help=f'among {",".join(ARMS)}')
    ap.add_argument('--rounds', type=int, default=1, help='repeat the sweep, keep the fastest')
    ap.add_argument('--epochs', type=int, default=120, help='SGS schedule: epochs')
    ap.add_argument('--iters-per-epoch', type=int, default=1281167 // 256,
                    help='SGS schedule: steps per epoch per GPU (ImageNet, 8 x 32)')
    ap.add_argument('--sgs-interval', type=int, default=5)
    ap.add_argument('--sgs-warmup', type=int, default=1)
    ap.add_argument('--threads', type=int, help='torch threads (CPU)')
    ap.add_argument('--clock', choices=['wall', 'cpu'],
                    help="'wall' (default on CUDA) or 'cpu': the process's CPU time (default "
                         'on the CPU: on a shared machine it counts the work, not the wait '
                         'for a core)')
    ap.add_argument('--json', metavar='PATH', help='also write the results as JSON')
    ap.add_argument('--probe', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith('cuda')
    args.batch = args.batch or (32 if cuda else 8)
    args.steps = args.steps or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    args.clock = args.clock or ('wall' if cuda else 'cpu')
    return args


def _ratio(value, base) -> str:
    return f'{value / base:.3f}' if base else ''


def table(results: dict, args) -> str:
    """The markdown table: each arm's figures and their ratios to plain."""
    n_ref = refresh_count(args.epochs, args.sgs_warmup, args.sgs_interval)
    total = args.epochs * args.iters_per_epoch
    mem = ('peak CUDA allocated' if args.device.startswith('cuda') else
           'peak RSS above the built model')
    lines = [f'| model | arm | step (ms) | vs plain | {mem} (MiB) | vs plain | '
             'trained params (M) | vs plain |', '|---|---|---|---|---|---|---|---|']
    for model in dict.fromkeys(m for m, _ in results):
        base = results.get((model, 'plain'), {})
        for (m, arm), r in results.items():
            if m != model:
                continue
            step = r['step_s'] + r.get('refresh_s', 0.0) * n_ref / total
            label = arm if arm != 'sgs' else (
                f'sgs (step {r["step_s"] * 1e3:.1f} + refresh {r["refresh_s"]:.2f} s x '
                f'{n_ref} / {total} steps)')
            lines.append(
                f'| {model} | {label} | {step * 1e3:.1f} | {_ratio(step, base.get("step_s"))} | '
                f'{r["peak_bytes"] / 2 ** 20:.0f} | '
                f'{_ratio(r["peak_bytes"], base.get("peak_bytes"))} | '
                f'{r["params"] / 1e6:.2f} | {_ratio(r["params"], base.get("params"))} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        print(json.dumps(probe(args)))
        return
    depths = [int(d) for d in args.models.split(',')]
    arms = args.arms.split(',')
    unknown = set(arms) - set(ARMS)
    if unknown:
        raise SystemExit(f'unknown arms {sorted(unknown)}; choose among {ARMS}')
    print(f'device {args.device}, batch {args.batch} at {args.size}px, {args.steps} timed steps '
          f'after {args.warmup}, {args.clock} clock, {args.rounds} round(s), '
          f'torch {torch.__version__}, '
          f'{torch.get_num_threads() if args.device == "cpu" else ""} threads, '
          f'load {load_avg()}', flush=True)
    results = {}
    for _ in range(args.rounds):
        for depth in depths:
            for arm in arms:
                r = run_probe(args, depth, arm)
                key = (r['model'], arm)
                if key not in results or r['step_s'] < results[key]['step_s']:
                    results[key] = r
                print(f'  {r["model"]} {arm}: step {r["step_s"] * 1e3:.1f} ms'
                      + (f', refresh {r["refresh_s"]:.2f} s' if 'refresh_s' in r else '')
                      + f', peak {r["peak_bytes"] / 2 ** 20:.0f} MiB (load {load_avg()})',
                      flush=True)
    print(table(results, args))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([dict(r) for r in results.values()], f, indent=1)


if __name__ == '__main__':
    main()
