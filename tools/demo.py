"""`make demo`: the SGS pretrain -> fine-tune chain on small synthetic data in
the real ImageNet / Cityscapes / MPII on-disk formats generated here.

1. writes seeded synthetic data to data/demo/ (once; sgs_mm.data.synthetic)
   and computes each task's chance level on it (sgs_mm.data.chance);
2. runs configs/demo/pipeline_demo.py with the pipeline of tools/pipeline.py:
   ResNet-18 pretrain +-SGS -> PSPNet-R18-D8 and SimpleBaseline-R18 +-SGS,
   each trained, then evaluated with its standard metric (top-1,
   mIoU/mAcc/aAcc, PCKh@0.5) by tools/test.py. On the CPU the baseline and
   the SGS chain run side by side, one thread per stage (deterministic: the
   same numbers on every run); with a GPU every stage runs on it, with
   --gpus N (N > 1) under torchrun on N GPUs;
3. writes work_dirs/demo/results.md (the table for the README between the
   demo-results markers, chance levels, how SGS changed G) and draws the G
   heatmaps, the baseline-vs-SGS curves and kernel magnitudes.

Finished stages are skipped on a rerun (new data or --force reruns all).

    python tools/demo.py [--gpus N] [--force] [--verbose]
    python tools/demo.py --print-readme-table     # the block for the README
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import re
import sys
import time
import warnings

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

DATA_VERSION = 5  # bump when sgs_mm.data.synthetic changes its output
DEFAULT_DATA = 'data/demo'
SPEC = osp.join('configs', 'demo', 'pipeline_demo.py')
MARK_START = '<!-- demo-results:start -->'
MARK_END = '<!-- demo-results:end -->'
# (task, what the table says, metric columns of the pipeline's results)
TASKS = {
    'cls': ('classification', ('top-1', )),
    'seg': ('segmentation', ('mIoU', 'mAcc', 'aAcc')),
    'pose': ('pose', ('PCKh@0.5', )),
}
CHANCE_NOTE = {
    'cls': 'top-1 of guessing among the {num_classes} balanced classes',
    'seg': 'predicting the most frequent training class everywhere '
           '(mmseg IoUMetric)',
    'pose': 'the mean training pose put into each person box '
            '(mmpose MpiiPCKAccuracy)',
}
# the pkg_resources deprecation warning mmengine triggers at import
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API',
                        category=UserWarning)


def say(text: str) -> None:
    print(f'[demo] {text}', flush=True)


# ------------------------------------------------------------------- data
def ensure_data(root: str, seed: int) -> bool:
    from sgs_mm.atomic_io import atomic_write_json
    from sgs_mm.data.synthetic import make_all
    stamp = osp.join(root, 'demo_data.json')
    want = dict(version=DATA_VERSION, seed=seed)
    if osp.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == want:
                say(f'data: {root} (generated before)')
                return False
    t0 = time.time()
    counts = make_all(root, seed=seed)
    atomic_write_json(stamp, want)
    say(f'data: wrote {counts} to {root} in {time.time() - t0:.1f}s')
    return True


def data_summary(root: str) -> str:
    """One line per dataset: what it is and how small."""
    def count(path, pattern=None):
        n = 0
        for _, _, files in os.walk(path):
            n += sum(1 for f in files if pattern is None or f.endswith(pattern))
        return n
    im, cs, mp = (osp.join(root, d) for d in ('imagenet', 'cityscapes', 'mpii'))
    with open(osp.join(im, 'meta', 'classes.txt')) as f:
        classes = [c.strip() for c in f if c.strip()]

    def n_json(split):
        with open(osp.join(mp, 'annotations', f'mpii_{split}.json')) as f:
            return len(json.load(f))
    return '\n'.join([
        f'- classification: {count(osp.join(im, "train"), ".JPEG")} train / '
        f'{count(osp.join(im, "val"), ".JPEG")} val images of 72x72 px, '
        f'{len(classes)} classes ({", ".join(classes)}) in the ImageNet layout;',
        f'- segmentation: {count(osp.join(cs, "leftImg8bit", "train"), ".png")} '
        f'train / {count(osp.join(cs, "leftImg8bit", "val"), ".png")} val street '
        'scenes of 256x128 px (6 of the 19 Cityscapes classes) in the Cityscapes '
        'layout;',
        f'- pose: {n_json("train")} train / {n_json("val")} val stick figures '
        '(16 MPII joints) in 128x128 px images in the MPII layout.'])


def chance_levels(root: str) -> dict:
    """Chance levels of the demo data, cached next to it."""
    path = osp.join(root, 'demo_chance.json')
    with open(osp.join(root, 'demo_data.json')) as f:
        stamp = json.load(f)
    if osp.isfile(path):
        with open(path) as f:
            cached = json.load(f)
        if cached.get('data') == stamp:
            return cached['chance']
    from sgs_mm.atomic_io import atomic_write_json
    from sgs_mm.data.chance import demo_chance
    chance = demo_chance(root)
    atomic_write_json(path, dict(data=stamp, chance=chance), indent=1)
    return chance


def data_root_options(config: str, data_root: str) -> dict:
    """--cfg-options that move a demo config's datasets from data/demo/ to
    ``data_root``."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    opts = {}
    for split in ('train', 'val', 'test'):
        ds = (cfg.get(f'{split}_dataloader') or {}).get('dataset') or {}
        for key in ('data_root', 'headbox_file'):
            value = ds.get(key)
            if isinstance(value, str) and value.startswith(DEFAULT_DATA):
                opts[f'{split}_dataloader.dataset.{key}'] = \
                    data_root + value[len(DEFAULT_DATA):]
    return opts


# ----------------------------------------------------------------- devices
def device_plan(gpus, cuda_count: int, cpus: int, jobs=None) -> dict:
    """How the stages run: ``gpus`` None (default: one GPU when there is
    one, else the CPU), 0 (the CPU), or N (N GPUs; N > 1 under torchrun).

    Returns ``dict(launcher, nproc, jobs, env, device)`` for
    :func:`sgs_mm.launch.pipeline.run_pipeline`. On the CPU every stage
    process uses one thread (so the numbers do not depend on the machine's
    core count) and up to ``min(4, cpus)`` independent stages run at once;
    GPU stages run one after the other.
    """
    if gpus is not None and gpus < 0:
        raise ValueError(f'--gpus must be >= 0, got {gpus}')
    if gpus == 0 or (gpus is None and cuda_count == 0):
        env = {'OMP_NUM_THREADS': '1', 'MKL_NUM_THREADS': '1'}
        if gpus == 0:
            env['CUDA_VISIBLE_DEVICES'] = ''  # CPU also on a GPU machine
        return dict(launcher='none', nproc=1,
                    jobs=jobs or max(1, min(4, cpus)), env=env, device='cpu')
    n = gpus or 1
    if n > cuda_count:
        raise ValueError(f'--gpus {n}: only {cuda_count} CUDA device(s) '
                         'visible')
    if n == 1:
        return dict(launcher='none', nproc=1, jobs=jobs or 1, env={},
                    device='cuda x1')
    # one torchrun per stage, one process per GPU (SyncBN where the config
    # has it: tools/train.py keeps it on GPUs)
    return dict(launcher='pytorch', nproc=n, jobs=jobs or 1, env={},
                device=f'cuda x{n}')


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cuda_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # pragma: no cover
        return 0


# ------------------------------------------------------------------ tables
def _fmt(values) -> str:
    return ' / '.join('-' if v is None else f'{v:.1f}' for v in values)


def _metrics_of(result: dict, cols) -> list:
    from sgs_mm.launch.pipeline import METRIC_COLUMNS, _metric
    keys = dict(METRIC_COLUMNS)
    return [_metric(result.get('metrics') or {}, keys[c]) for c in cols]


def pairs_by_model(results: dict):
    """[(model, task, {variant: result})] in spec order."""
    out = {}
    for r in results['stages']:
        table = r.get('table') or {}
        entry = out.setdefault(table.get('model', r['name']),
                               (r.get('task'), {}))
        entry[1][table.get('variant', r['name'])] = r
    return [(m, t, v) for m, (t, v) in out.items()]


def _cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else platform's."""
    import platform
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return ' '.join(line.split(':', 1)[1].split())
    except OSError:
        pass
    return platform.processor() or 'unknown'


def machine_line(device: str) -> str:
    """The line under the README table that says which machine made it.

    Float results depend on the machine as well as on the package versions:
    oneDNN/MKL pick other kernels for another instruction set (AVX2 vs
    AVX-512), which moves the demo's numbers by a point or two. The line
    names the CPU, the kernels torch dispatches to and the torch/numpy
    versions (a GPU run: the GPU and CUDA), so that a rerun is expected to
    give the table number for number only on a machine with the same line.

    Args:
        device (str): the plan's device ('cpu', 'cuda x1', ...).
    """
    import platform

    import numpy
    import torch

    from sgs_mm.compat import cpu_capability
    if device.startswith('cuda'):
        hw = (f'GPU {torch.cuda.get_device_name(0)} ({device}, '
              f'CUDA {torch.version.cuda})')
    else:
        hw = (f'CPU {_cpu_model()} ({platform.machine()}, torch kernels '
              f'{cpu_capability()})')
    return (f'Made on {hw} with torch {torch.__version__.split("+")[0]}, '
            f'numpy {numpy.__version__}.')


def machine_of(block: str) -> str:
    """The machine line of a demo-results block ('' where it has none)."""
    return next((ln for ln in block.splitlines()
                 if ln.startswith('Made on ')), '')


def readme_table(results: dict, chance: dict, machine: str = '') -> str:
    """The demo's summary table between the demo-results markers: the block
    the README carries (no times, so a rerun on the same machine reproduces
    it exactly), with ``machine`` (:func:`machine_line`) under it."""
    lines = [MARK_START,
             '| Model | Task (metric, %) | Chance | Baseline | SGS | Device |',
             '|---|---|---|---|---|---|']
    for model, task, variants in pairs_by_model(results):
        name, cols = TASKS.get(task, (task, ()))
        ch = chance.get(task) or {}
        cells = []
        for v in ('Baseline', 'SGS'):
            r = variants.get(v)
            cells.append(_fmt(_metrics_of(r, cols)) if r else '-')
        devices = sorted({r.get('device') or '-' for r in variants.values()})
        lines.append(f'| {model} | {name} ({" / ".join(cols)}) | '
                     f'{_fmt([ch.get(c) for c in cols])} | {cells[0]} | '
                     f'{cells[1]} | {" / ".join(devices)} |')
    if machine:
        lines += ['', machine]
    lines.append(MARK_END)
    return '\n'.join(lines) + '\n'


def extract_block(text: str) -> str:
    """The text between the demo-results markers, markers included."""
    m = re.search(re.escape(MARK_START) + r'.*?' + re.escape(MARK_END), text,
                  re.S)
    if not m:
        raise ValueError(f'no {MARK_START} ... {MARK_END} block')
    return m.group(0).strip() + '\n'


def above_chance(results: dict, chance: dict) -> list:
    """Stages whose headline metric is not above its chance level."""
    bad = []
    for _, task, variants in pairs_by_model(results):
        cols = TASKS.get(task, (task, ()))[1][:1]
        for r in variants.values():
            (value, ) = _metrics_of(r, cols) or [None]
            level = (chance.get(task) or {}).get(cols[0]) if cols else None
            if value is not None and level is not None and value <= level:
                bad.append(f'{r["name"]} {cols[0]} {value:.1f} <= chance '
                           f'{level:.1f}')
    return bad


def g_summary(results: dict) -> list:
    """How SGS changed G in each SGS stage (from its G history)."""
    from sgs_mm.analysis.history import read_history_file
    from sgs_mm.launch.pipeline import result_path
    out = []
    for r in results['stages']:
        path = result_path(results, r, 'sgs_history')
        if not path or not osp.isfile(path):
            continue
        hist = read_history_file(path)
        last = hist.records[-1]
        centres = [float(m[m.shape[0] // 2, m.shape[1] // 2])
                   for m in last.layers.values()]
        corners = [float(m[[0, 0, -1, -1], [0, -1, 0, -1]].mean())
                   for m in last.layers.values()]
        # an epoch schedule on an iteration-based loop (mmseg) records the
        # loop's epoch (always 0): say the iteration then
        where = [rec.where for rec in hist.records]
        if len(set(where)) < len(where):
            where = [f'iter {rec.iter}' for rec in hist.records]
        out.append(
            f'- {r["name"]}: {len(hist.records)} refresh(es) '
            f'({", ".join(where)}), '
            f'{len(last.layers)} layers; at the last refresh the centre of G '
            f'is {min(centres):.2f}-{max(centres):.2f} and the corners '
            f'{min(corners):.2f}-{max(corners):.2f} (G = 1 without SGS)')
    return out


def preamble(results: dict, chance: dict, data_root: str,
             figures: list, machine: str = '') -> str:
    parts = [
        '**Demo data: synthetic and tiny.** `sgs_mm.data.synthetic` generated '
        f'`{data_root}` (seeded) in the real on-disk formats:',
        data_summary(data_root), '',
        'These numbers show that every stage trains and is evaluated with '
        'its standard metric and that SGS changes G; they say nothing about '
        'whether SGS helps (one seed of tiny runs; another seed moves them '
        'by about as much as the baseline-SGS differences).', '',
        '## Demo summary', '',
        readme_table(results, chance, machine).rstrip('\n'), '',
        'Chance: what a trivial predictor scores on the same val data, '
        'computed by `sgs_mm.data.chance`: ' + '; '.join(
            f'{TASKS[t][0]}: {CHANCE_NOTE[t].format(**chance.get(t, {}))}'
            for t in ('cls', 'seg', 'pose') if t in chance) + '.']
    gs = g_summary(results)
    if gs:
        parts += ['', '## SGS: G learned by the SGS stages', ''] + gs
    if figures:
        parts += ['', '## Figures', ''] + [f'- `{f}`' for f in figures]
    return '\n'.join(parts) + '\n'


# ------------------------------------------------------------------- plots
def _tool(name: str):
    spec = importlib.util.spec_from_file_location(
        f'_demo_tool_{name}', osp.join(REPO, 'tools', 'analysis', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _quietly(fn, *args):
    """Run an analysis tool's ``run`` with its console output kept back
    (returned with the result)."""
    import contextlib
    import io
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        out = fn(*args)
    return out, buf.getvalue()


def draw_figures(results: dict, work_root: str) -> list:
    """G heatmaps, baseline-vs-SGS curves and kernel magnitudes; a figure
    that fails is reported, never fails the demo."""
    from sgs_mm.launch.pipeline import result_path
    written = []

    def attempt(what, fn):
        try:
            out, text = fn()
            written.append(out)
            for line in text.splitlines():
                # the demo validates once, after training (tools/test.py)
                if line.startswith('note:') and 'no validation' not in line:
                    say(f'{what}: {line}')
            say(f'{what}: {out}')
        except Exception as e:  # noqa: BLE001 - report, go on
            say(f'{what} failed: {type(e).__name__}: {e}')

    plot_sgs = _tool('plot_sgs')
    for r in results['stages']:
        hist = result_path(results, r, 'sgs_history')
        if hist and osp.isfile(hist):
            folder = osp.dirname(hist)
            attempt(f'G heatmaps of {r["name"]}', lambda f=folder: _quietly(
                plot_sgs.run, plot_sgs.parse_args(
                    [f, '--out', osp.join(f, 'sgs_g.png')])))
    compare, kernels = _tool('compare_runs'), _tool('kernel_magnitude')
    for model, task, variants in pairs_by_model(results):
        base, sgs = variants.get('Baseline'), variants.get('SGS')
        if not (base and sgs and base.get('tested_checkpoint')
                and sgs.get('tested_checkpoint')):
            continue
        tag = base['name']
        cks = [result_path(results, r, 'tested_checkpoint')
               for r in (base, sgs)]
        runs = [osp.dirname(c) for c in cks]
        name, cols = TASKS.get(task, (task, ()))
        test = ', '.join(
            f'{c} {_fmt(_metrics_of(base, [c]))} vs {_fmt(_metrics_of(sgs, [c]))}'
            for c in cols)
        title = f'{model} ({name}): baseline vs SGS; final checkpoints: {test}'
        out = osp.join(work_root, f'compare_{tag}.png')
        attempt(f'{model} baseline vs SGS curves',
                lambda r=runs, o=out, t=title: _compare(compare, r, o, t))
        attempt(f'{model} kernel magnitudes vs G',
                lambda c=cks, t=tag: _kernels(kernels, c, osp.join(
                    work_root, f'kernels_{t}.png'), model))
    return written


def _compare(compare, runs, out, title):
    """compare_runs.py (table + figure), its title naming the model and task."""
    return out, _quietly(compare.run, compare.parse_args(
        runs + ['--labels', 'baseline', 'SGS', '--out', out, '--title', title]))[1]


def _kernels(kernels, ckpts, out, model):
    """kernel_magnitude.py on the KxK convs that have a G (SGS scales odd
    square kernels; e.g. the 4x4 deconvolutions of SimpleBaseline's head
    have none and are left out, with a note)."""
    from sgs_mm.analysis import conv_weights
    from sgs_mm.analysis.ckpt import load_checkpoint, state_dict_of
    from sgs_mm.analysis.history import history_from_checkpoint
    from sgs_mm.analysis.selection import first_middle_last
    sgs_ckpt = load_checkpoint(ckpts[1])
    with_g = list(history_from_checkpoint(sgs_ckpt, ckpts[1]).records[0].layers)
    convs = list(conv_weights(state_dict_of(sgs_ckpt)))
    left_out = [n for n in convs if n not in with_g]
    layers = first_middle_last([n for n in convs if n in with_g])
    result = _quietly(kernels.run, kernels.parse_args(
        ckpts + ['--labels', 'baseline', 'SGS', '--out', out, '--layers'] +
        [re.sub(r'([\[\]*?])', r'[\1]', n) for n in layers]))
    if left_out:
        shapes = sorted({'x'.join(str(s) for s in conv_weights(
            state_dict_of(sgs_ckpt))[n].shape[-2:]) for n in left_out})
        say(f'{model} kernel magnitudes: note: {len(left_out)} KxK layer(s) '
            f'without G left out ({", ".join(shapes)} kernels, e.g. '
            f'{left_out[0]}): SGS scales odd square kernels only')
    return result


# -------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Run the sgs_mm demo chain (pretrain -> segmentation / '
        'pose, with and without SGS) on generated data.')
    p.add_argument('--data-root', default=DEFAULT_DATA,
                   help='where the generated data goes (default: data/demo '
                   'in the repository)')
    p.add_argument('--work-root', default='work_dirs/demo',
                   help='where the stages run (default: work_dirs/demo in '
                   'the repository)')
    p.add_argument('--seed', type=int, default=0, help='data seed')
    p.add_argument('--gpus', type=int, default=None, metavar='N',
                   help='0: the CPU; N: N GPUs (N > 1: torchrun, one process '
                   'per GPU); default: one GPU when CUDA sees one, else the '
                   'CPU (make demo GPUS=N)')
    p.add_argument('--jobs', type=int, default=None,
                   help='stages run at once (default: up to 4 on the CPU, '
                   'one per CPU core; 1 on GPUs)')
    p.add_argument('--force', action='store_true', help='rerun all stages')
    p.add_argument('--verbose', action='store_true',
                   help='stream the training logs')
    p.add_argument('--progress', type=float, default=20.0, metavar='SEC',
                   help='a status line per running stage every SEC seconds')
    p.add_argument('--dry-run', action='store_true',
                   help='print the stage commands only')
    p.add_argument('--print-readme-table', action='store_true',
                   help='print the README block of the last run\'s '
                   'results.md and exit')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # folders given on the command line are relative to where it was typed
    for key, default in (('work_root', 'work_dirs/demo'),
                         ('data_root', DEFAULT_DATA)):
        if getattr(args, key) != default:
            setattr(args, key, osp.abspath(getattr(args, key)))
    os.chdir(REPO)
    if args.print_readme_table:
        path = osp.join(args.work_root, 'results.md')
        if not osp.isfile(path):
            raise SystemExit(f'{path} not found: run the demo first')
        with open(path) as f:
            sys.stdout.write(extract_block(f.read()))
        return None
    t_start = time.time()
    plan = device_plan(args.gpus, _cuda_count() if args.gpus != 0 else 0,
                       _cpus(), args.jobs) if not args.dry_run else \
        device_plan(args.gpus, args.gpus or 0, _cpus(), args.jobs)
    fresh = False if args.dry_run else ensure_data(args.data_root, args.seed)
    from sgs_mm.launch.pipeline import (Console, load_spec, run_pipeline,
                                        write_tables)
    spec = load_spec(SPEC)
    if args.data_root != DEFAULT_DATA:
        for stage in spec['stages']:
            stage['cfg_options'] = dict(
                data_root_options(stage['config'], args.data_root),
                **(stage.get('cfg_options') or {}))
    say(f'{len(spec["stages"])} stages on {plan["device"]}'
        + (f', up to {plan["jobs"]} at once (one CPU thread each)'
           if plan['device'] == 'cpu' and plan['jobs'] > 1 else '')
        + f'; logs in {args.work_root}/<stage>/pipeline.log')
    results = run_pipeline(
        spec, work_root=args.work_root, force=args.force or fresh,
        quiet=not args.verbose, launcher=plan['launcher'],
        nproc=plan['nproc'], jobs=plan['jobs'], env=plan['env'],
        dry_run=args.dry_run, progress=args.progress,
        console=Console(0 if args.dry_run else args.progress, prefix='demo'))
    if args.dry_run:
        return results
    chance = chance_levels(args.data_root)
    figures = draw_figures(results, args.work_root)
    md = write_tables(results, args.work_root, preamble(
        results, chance, args.data_root,
        [osp.relpath(f, args.work_root) for f in figures],
        machine_line(plan['device'])))
    print()
    print(md.split('## Stages')[0].rstrip())
    for line in above_chance(results, chance):
        say(f'WARNING: not above chance: {line}')
    say(f'results: {args.work_root}/results.md, results.json; total wall time '
        f'{time.time() - t_start:.0f}s')
    return results


if __name__ == '__main__':
    main()
