"""Helpers for tests that start from the configs OpenMMLab packages ship."""
from pathlib import Path

from mmengine.config import Config


def shipped_config(package: str, rel: str) -> Config:
    """Load a config shipped inside an installed OpenMMLab package."""
    mod = __import__(package)
    path = Path(mod.__file__).parent / '.mim' / 'configs' / rel
    assert path.is_file(), f'{package} does not ship {rel}'
    return Config.fromfile(str(path))


def no_syncbn(obj):
    """Replace SyncBN by BN everywhere in a config (single CPU process), in place."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == 'type' and value == 'SyncBN':
                obj[key] = 'BN'
            else:
                no_syncbn(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            no_syncbn(value)
    return obj


REPO = Path(__file__).resolve().parents[1]


def project_config(rel: str, options=None) -> Config:
    """Load one of this repository's configs (``configs/<rel>``) as the project's
    tools do: ``--cfg-options``-style ``options`` merged, the default scope
    registered and SyncBN turned into BN (one CPU process)."""
    import sgs_mm.checkpoint  # noqa: F401  (StrictPretrained)
    import sgs_mm.classifiers  # noqa: F401  (ReparamImageClassifier)
    from sgs_mm.launch.runner import register_scope, syncbn_to_bn
    cfg = Config.fromfile(str(REPO / 'configs' / rel))
    if options:
        cfg.merge_from_dict(options)
    register_scope(cfg)
    syncbn_to_bn(cfg.model)
    return cfg


def build_model(cfg: Config):
    """``cfg.model`` built in the config's default scope."""
    from mmengine.registry import MODELS, DefaultScope
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return MODELS.build(cfg.model)
