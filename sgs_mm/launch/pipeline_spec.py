"""Reading a pipeline spec (an mmengine config file with ``work_root`` and
``stages``), with stage entries changed by name from the command line."""
import os.path as osp
from typing import Dict, Optional, Tuple

from .arms import check_arm

__all__ = ['split_stage_options', 'load_spec']


def split_stage_options(options: Optional[dict]) -> Tuple[dict, dict]:
    """Split command-line options into spec-stage overrides and the rest.

    A key ``stages.<stage name>.<field>[.<sub key> ...]`` changes a field of
    that stage's spec entry (``enabled``, ``nproc``, ``cfg_options`` ...);
    every other key is a config option for every stage. Returns
    ``({stage name: {field path: value}}, other options)``.
    """
    per_stage: Dict[str, Dict[str, object]] = {}
    rest = {}
    for key, value in (options or {}).items():
        parts = key.split('.')
        if parts[0] == 'stages':
            if len(parts) < 3:
                raise ValueError(f'{key}={value!r}: a stage option is '
                                 'stages.<stage name>.<field>=<value>')
            per_stage.setdefault(parts[1], {})['.'.join(parts[2:])] = value
        else:
            rest[key] = value
    return per_stage, rest


def _set_path(d: dict, path: str, value) -> None:
    *outer, last = path.split('.')
    for k in outer:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise ValueError(f'{path}: {k} is not a dict in the stage')
    d[last] = value


def load_spec(path: str, stage_options: Optional[dict] = None) -> dict:
    """Read a pipeline spec. ``stage_options`` (from
    :func:`split_stage_options`) changes stage entries by name before the
    spec is checked; stages with ``enabled=False`` are left out, and so are
    the stages that initialise from a stage left out and have no
    ``enabled`` of their own (a whole chain switches with its first stage).
    A stage's ``reparam`` arm (:mod:`sgs_mm.launch.arms`) is checked."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    stages = [dict(s) for s in cfg.stages]
    names = [s['name'] for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f'duplicate stage names in {path}: {names}')
    for name, fields in (stage_options or {}).items():
        if name not in names:
            raise ValueError(f'stages.{name}: {path} has no stage {name!r}; '
                             f'its stages: {", ".join(names)}')
        for field, value in fields.items():
            _set_path(stages[names.index(name)], field, value)
    off = []  # left out: enabled=False, or following a stage left out
    for s in stages:
        if s.get('enabled', True) is False or (
                'enabled' not in s and s.get('init_from') in off):
            off.append(s['name'])
    stages = [s for s in stages if s['name'] not in off]
    spec = dict(
        work_root=cfg.get('work_root', 'work_dirs/pipeline'),
        stages=stages,
        title=cfg.get('title', osp.splitext(osp.basename(path))[0]))
    names = [s['name'] for s in spec['stages']]
    for s in spec['stages']:
        if s.get('init_from') in off:
            raise ValueError(f'stage {s["name"]} initialises from '
                             f'{s["init_from"]}, which is not enabled')
        if s.get('init_from') and s['init_from'] not in names:
            raise ValueError(f'stage {s["name"]}: init_from '
                             f'{s["init_from"]!r} is not a stage')
        if s.get('init_from') and names.index(s['init_from']) > names.index(
                s['name']):
            raise ValueError(f'stage {s["name"]} comes before the stage '
                             f'{s["init_from"]} it initialises from')
        check_arm(s)
        if s.get('init_ckpt', 'last') not in ('last', 'best'):
            raise ValueError(f'stage {s["name"]}: init_ckpt must be "last" '
                             f'or "best", got {s["init_ckpt"]!r}')
    return spec
