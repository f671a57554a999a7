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
