"""Evaluate a checkpoint of an mmpretrain, mmsegmentation, mmpose or mmdetection config
(dispatched by the config's ``default_scope``).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--metrics-out FILE.json] [--cfg-options k=v ...]
        [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from sgs_mm.launch.runner import add_common_args  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--metrics-out',
        help='write the test metrics to this JSON file (rank 0)')
    add_common_args(parser)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _jsonable(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def main(argv=None):
    args = parse_args(argv)
    from sgs_mm.launch import (build_runner, check_data, load_config,
                               setup_distributed)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    # evaluation only: the backbone is loaded from the checkpoint, not from
    # the pretrain stage
    if not args.skip_data_check:
        check_data(cfg, splits=('test', ))
    setup_distributed(cfg, args.launcher)
    runner = build_runner(cfg)
    metrics = runner.test()
    from mmengine.dist import is_main_process
    if args.metrics_out and is_main_process():
        os.makedirs(osp.dirname(osp.abspath(args.metrics_out)), exist_ok=True)
        from sgs_mm.atomic_io import atomic_write_json
        atomic_write_json(args.metrics_out,
                          {k: _jsonable(v) for k, v in metrics.items()}, indent=1)
    return metrics


if __name__ == '__main__':
    main()
