"""Helpers behind tools/train.py, tools/test.py and tools/pipeline.py."""
from .data_check import DatasetNotFoundError, check_data, check_dataset_cfg
from .runner import (build_runner, find_checkpoint, load_config,
                     register_scope, setup_distributed, syncbn_to_bn)

__all__ = [
    'DatasetNotFoundError', 'check_data', 'check_dataset_cfg', 'build_runner',
    'find_checkpoint', 'load_config', 'register_scope', 'setup_distributed',
    'syncbn_to_bn'
]
