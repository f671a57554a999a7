"""Run a pretrain -> fine-tune pipeline spec (stages with/without SGS),
restartable, and write ``results.md`` / ``results.json`` (Tables 7-8 style).

    python tools/pipeline.py configs/pipeline/paper_r18.py
    python tools/pipeline.py SPEC --launcher pytorch --seeds 3
    python tools/pipeline.py SPEC --stages pretrain_r18 pspnet_r18 --dry-run

Every stage is evaluated on its final checkpoint and downstream stages start
from the final upstream checkpoint; the best in-training validation is only
an extra, labelled column. ``--seeds N`` runs the whole chain with seeds
0..N-1 and reports mean ± std and the paired SGS - baseline difference.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('spec', help='pipeline spec (mmengine config file)')
    p.add_argument('--work-root', help='override the spec\'s work_root')
    p.add_argument('--stages', nargs='+', help='run only these stages')
    p.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='how each stage is launched')
    p.add_argument('--nproc', type=int, default=1,
                   help='processes (GPUs) per stage for distributed '
                   'launchers (a stage\'s own `nproc` in the spec wins)')
    p.add_argument('--port', type=int, default=29500, help='master port')
    p.add_argument('--slurm-partition', help='partition for --launcher slurm')
    p.add_argument('--seeds', type=int, default=1,
                   help='run every stage with N seeds (randomness.seed = '
                   '0..N-1, each chain in <work_root>/seed<k>/); 1 (default)'
                   ': one run with the configs\' own seeds in <work_root>/')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='key=value options added to the config of every '
                   'stage; a key stages.<stage>.<field> changes that stage\'s '
                   'entry of the spec instead, e.g. '
                   'stages.pspnet_r18_sgs_diag_removal.enabled=True')
    p.add_argument('--force', action='store_true',
                   help='rerun the selected stages even if finished')
    p.add_argument('--dry-run', action='store_true',
                   help='print the commands only')
    p.add_argument('--quiet', action='store_true',
                   help='keep the stage logs in <stage>/pipeline.log only '
                   '(the console gets the progress lines)')
    p.add_argument('--jobs', type=int, default=1,
                   help='run up to N independent stages at once (default 1)')
    p.add_argument('--threads', type=int,
                   help='CPU threads per stage process (OMP/MKL_NUM_THREADS)')
    p.add_argument('--progress', type=float, default=20.0, metavar='SEC',
                   help='a status line per running stage every SEC seconds '
                   '(default 20; 0: none)')
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error('--seeds must be at least 1')
    if args.jobs < 1:
        p.error('--jobs must be at least 1')
    return args


def run_options(args, cfg_options=None, env=None):
    """The :class:`~sgs_mm.launch.run_options.RunOptions` of the parsed
    command line (``cfg_options``: the options that are not spec-stage
    changes; ``env``: variables for every stage process)."""
    from sgs_mm.launch.run_options import RunOptions
    return RunOptions(
        work_root=args.work_root, only=args.stages, launcher=args.launcher,
        nproc=args.nproc, port=args.port, force=args.force,
        dry_run=args.dry_run, quiet=args.quiet,
        slurm_partition=args.slurm_partition,
        cfg_options=cfg_options or None, seeds=args.seeds, jobs=args.jobs,
        env=env, progress=args.progress)


def main(argv=None):
    args = parse_args(argv)
    from sgs_mm.launch.pipeline import (load_spec, markdown_tables,
                                        run_pipeline, split_stage_options,
                                        stage_env)
    stage_options, cfg_options = split_stage_options(args.cfg_options)
    spec = load_spec(args.spec, stage_options)
    env = None
    if args.threads:
        env = {k: v for k, v in stage_env(args.threads, base={}).items()
               if k.endswith('_NUM_THREADS')}
    results = run_pipeline(spec, run_options(args, cfg_options, env))
    if not args.dry_run:
        print(markdown_tables(results))
        print(f'[pipeline] tables: {osp.join(results["work_root"], "results.md")}'
              f' and results.json')
    return results


if __name__ == '__main__':
    main()
