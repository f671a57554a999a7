"""Fail early, with the expected path and the prepare step, when a config's
dataset files are missing (checked before the Runner is built)."""
import os
import os.path as osp
from typing import Iterable, List, Optional

__all__ = ['DatasetNotFoundError', 'check_dataset_cfg', 'check_data']

PREPARE = {
    'CityscapesDataset':
    'download leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from '
    'https://www.cityscapes-dataset.com into {root}, then create the '
    '*_gtFine_labelTrainIds.png files with mmsegmentation\'s converter: '
    'python <mmseg>/.mim/tools/dataset_converters/cityscapes.py {root} '
    '--nproc 8 (tools/dataset_converters/cityscapes.py in the mmsegmentation '
    'repository)',
    'MpiiDataset':
    'download the MPII images (mpii_human_pose_v1.tar.gz) into {root}images/ '
    'and mmpose\'s MPII annotations mpii_train.json, mpii_val.json and the '
    'head-box file mpii_gt_val.mat into {root}annotations/ (mmpose docs: '
    'dataset_zoo/2d_body_keypoint.md, MPII)',
    'ImageNet':
    'put the ILSVRC2012 images in {root}/train/<wnid>/*.JPEG and {root}/val/ '
    'with the ann files {root}/meta/train.txt and {root}/meta/val.txt '
    '(mmpretrain docs: user_guides/dataset_prepare.md, ImageNet)',
}
_DEMO_HINT = ('for the built-in synthetic data run `python -m '
              'sgs_mm.data.synthetic data/demo` (or `make demo`)')


class DatasetNotFoundError(FileNotFoundError):
    """A dataset path a config points to does not exist."""


def _join(root: Optional[str], path: str) -> str:
    if not path or not root or osp.isabs(path) or '://' in path:
        return path
    return osp.join(root, path)


def _has_file_with_suffix(folder: str, suffix: str) -> bool:
    for _, _, files in os.walk(folder):
        if any(f.endswith(suffix) for f in files):
            return True
    return False


def _fail(ds_type: str, what: str, path: str, root: str) -> None:
    step = PREPARE.get(ds_type, 'prepare the dataset as the library\'s '
                       'documentation describes')
    raise DatasetNotFoundError(
        f'{ds_type}: {what} {path!r} does not exist (data_root={root!r}). '
        f'Prepare step: {step.format(root=root or "data/")}. Another location: '
        '--cfg-options <train|val|test>_dataloader.dataset.data_root=PATH. '
        f'Demo: {_DEMO_HINT}.')


def check_dataset_cfg(ds: dict) -> List[str]:
    """Check one dataset config (recursing into dataset wrappers).

    Returns the checked paths; raises :class:`DatasetNotFoundError`.
    """
    if ds is None:
        return []
    if 'dataset' in ds:
        return check_dataset_cfg(ds['dataset'])
    if 'datasets' in ds:
        out = []
        for d in ds['datasets']:
            out += check_dataset_cfg(d)
        return out
    ds_type = ds.get('type', '')
    ds_type = ds_type if isinstance(ds_type, str) else ds_type.__name__
    ds_type = ds_type.split('.')[-1]
    root = ds.get('data_root') or ''
    checked = []
    if root and '://' not in root and not osp.isdir(root):
        _fail(ds_type, 'data_root', root, root)
    ann = _join(root, ds.get('ann_file') or '')
    if ann and '://' not in ann:
        if not osp.isfile(ann):
            _fail(ds_type, 'annotation file', ann, root)
        checked.append(ann)
    prefix = ds.get('data_prefix') or {}
    if isinstance(prefix, str):
        prefix = dict(img_path=prefix)
    if ds_type == 'ImageNet' and not prefix and not ann:
        prefix = dict(img_path=ds.get('split', 'train'))
    for key, sub in prefix.items():
        path = _join(root, sub)
        if path and '://' not in path:
            if not osp.isdir(path):
                _fail(ds_type, f'{key} folder', path, root)
            checked.append(path)
    if ds_type == 'CityscapesDataset' or 'seg_map_path' in prefix:
        seg_dir = _join(root, prefix.get('seg_map_path', ''))
        suffix = ds.get('seg_map_suffix', '_gtFine_labelTrainIds.png'
                        if ds_type == 'CityscapesDataset' else '.png')
        if seg_dir and not _has_file_with_suffix(seg_dir, suffix):
            _fail(ds_type, f'label maps *{suffix} under', seg_dir, root)
    headbox = ds.get('headbox_file')
    if headbox:
        if not osp.isfile(headbox):
            _fail(ds_type, 'head-box file (headbox_file)', headbox, root)
        checked.append(headbox)
    return checked


def check_data(cfg, splits: Iterable[str] = ('train', 'val')) -> List[str]:
    """Check the datasets of ``<split>_dataloader`` for each split in the
    config; return the checked paths."""
    checked = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset') is not None:
            checked += check_dataset_cfg(loader['dataset'])
    return checked
