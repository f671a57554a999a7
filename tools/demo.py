"""`make demo`: the SGS pretrain -> fine-tune chain on CPU, on small data in
the real ImageNet / Cityscapes / MPII on-disk formats generated here.

1. writes seeded synthetic data to data/demo/ (once; sgs_mm.data.synthetic)
2. runs configs/demo/pipeline_demo.py with tools/pipeline.py: ResNet-18
   pretrain +-SGS -> PSPNet-R18-D8 and SimpleBaseline-R18 +-SGS, each
   evaluated with its standard metric (top-1, mIoU/mAcc/aAcc, PCKh@0.5)
3. prints the results table (work_dirs/demo/results.md, results.json) and
   draws the G heatmaps of the SGS stages (<stage>/sgs_g.png from
   sgs_g_history.jsonl).

Finished stages are skipped on a rerun (new data or --force reruns all).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)

DATA_VERSION = 4  # bump when sgs_mm.data.synthetic changes its output


def ensure_data(root: str, seed: int) -> None:
    from sgs_mm.data.synthetic import make_all
    stamp = osp.join(root, 'demo_data.json')
    want = dict(version=DATA_VERSION, seed=seed)
    if osp.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == want:
                print(f'[demo] data: {root} (generated before)')
                return False
    t0 = time.time()
    counts = make_all(root, seed=seed)
    with open(stamp, 'w') as f:
        json.dump(want, f)
    print(f'[demo] data: wrote {counts} to {root} in {time.time() - t0:.1f}s')
    return True


def analysis_tool(script: str, inputs, out: str, what: str) -> None:
    """Run tools/analysis/<script> INPUTS --out OUT; report, never fail the demo."""
    cmd = [sys.executable, osp.join('tools', 'analysis', script), *inputs, '--out', out]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode == 0:
        print(f'[demo] {what}: {out}')
    else:
        print(f'[demo] {what} failed: {proc.stderr.strip().splitlines()[-1:]}')


def baseline_sgs_pairs(stages):
    """(baseline, SGS) stage results with the same table model."""
    by_model = {}
    for r in stages:
        table = r.get('table') or {}
        by_model.setdefault(table.get('model'), {})[table.get('variant')] = r
    return [(v['Baseline'], v['SGS']) for v in by_model.values()
            if 'Baseline' in v and 'SGS' in v and v['Baseline'].get('tested_checkpoint')
            and v['SGS'].get('tested_checkpoint')]


def main(argv=None):
    p = argparse.ArgumentParser(description='Run the sgs_mm demo chain.')
    p.add_argument('--data-root', default='data/demo')
    p.add_argument('--work-root', default='work_dirs/demo')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--force', action='store_true', help='rerun all stages')
    p.add_argument('--verbose', action='store_true',
                   help='stream the training logs')
    args = p.parse_args(argv)
    os.chdir(REPO)
    t_start = time.time()
    fresh = ensure_data(args.data_root, args.seed)
    from sgs_mm.launch.pipeline import (load_spec, markdown_tables,
                                        run_pipeline)
    spec = load_spec(osp.join('configs', 'demo', 'pipeline_demo.py'))
    extra = None
    if args.data_root != 'data/demo':
        raise SystemExit('--data-root other than data/demo: run '
                         'tools/pipeline.py with --cfg-options instead')
    results = run_pipeline(spec, work_root=args.work_root, force=args.force or fresh,
                           quiet=not args.verbose, cfg_options=extra)
    # G heatmaps of the SGS stages; baseline vs SGS curves and kernel magnitudes
    for r in results['stages']:
        hist = r.get('sgs_history')
        if hist and osp.isfile(hist):
            analysis_tool('plot_sgs.py', [osp.dirname(hist)],
                          osp.join(osp.dirname(hist), 'sgs_g.png'), 'G heatmaps')
    for base, sgs in baseline_sgs_pairs(results['stages']):
        tag = base['name']
        runs = [osp.dirname(base['tested_checkpoint']), osp.dirname(sgs['tested_checkpoint'])]
        analysis_tool('compare_runs.py', runs + ['--labels', 'baseline', 'SGS'],
                      osp.join(args.work_root, f'compare_{tag}.png'), 'baseline vs SGS curves')
        analysis_tool('kernel_magnitude.py', [base['tested_checkpoint'], sgs['tested_checkpoint']],
                      osp.join(args.work_root, f'kernels_{tag}.png'), 'kernel magnitude vs G')
    print()
    print(markdown_tables(results))
    print('chance level on the demo data: top-1 25% (4 classes); see '
          'README "Demo" for what the numbers mean')
    print(f'[demo] results: {args.work_root}/results.md, results.json; '
          f'total wall time {time.time() - t_start:.0f}s')


if __name__ == '__main__':
    main()
