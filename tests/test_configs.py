"""Every config in configs/ parses and every baseline config builds its
model and its train/val/test data pipelines on CPU (no weight downloads; an
SGS config is its baseline plus the hook, tests/test_paper_recipes.py); the
SGS fragment is one _base_ line and
--cfg-options can switch it; pretrain checkpoints load into PSPNet and
SimpleBaseline backbones (OpenMMLab-standard and paper-recipe configs) with
zero missing/unexpected keys; missing data errors name the path."""
from pathlib import Path

import pytest
from conftest import load_script
import torch
from mm_configs import build_model, project_config

REPO = Path(__file__).resolve().parents[1]
SPEC_DIRS = ('pipeline', )


def _model_configs():
    out = []
    for p in sorted((REPO / 'configs').rglob('*.py')):
        rel = p.relative_to(REPO / 'configs')
        if rel.parts[0] in ('_base_', ) + SPEC_DIRS or \
                p.name.startswith('pipeline'):
            continue
        out.append(str(rel))
    return out


def test_config_inventory():
    cfgs = _model_configs()
    # {OpenMMLab standard, paper recipe} x {18, 34, 50} x {baseline, SGS}
    for sub, n in (('pretrain', 12), ('pspnet', 12), ('simplebaseline', 12),
                   ('demo', 6)):
        assert sum(c.startswith(sub + '/') for c in cfgs) == n, sub


@pytest.mark.parametrize('rel', _model_configs())
def test_config_parses_and_builds(rel):
    cfg = project_config(rel)
    assert cfg.default_scope in ('mmpretrain', 'mmseg', 'mmpose')
    bb = cfg.model.backbone
    # plain stem everywhere (see convert_backbone); the paper PSPNet's
    # FullyDilatedResNet is mmseg's ResNet with conv2 of BasicBlocks dilated
    want = 'FullyDilatedResNet' if 'paper200e' in rel else 'ResNet'
    assert bb.type == want
    if cfg.default_scope != 'mmpretrain':
        assert bb.init_cfg.type == 'StrictPretrained'
        assert bb.init_cfg.prefix == 'backbone.'
    if rel.endswith('_sgs.py'):
        hook = cfg.custom_hooks[0]
        assert hook.type == 'SpatialGradScalingHook' and hook.enabled
        return  # the same model as its baseline (test_paper_recipes.py)
    assert all(h.type != 'SpatialGradScalingHook'
               for h in cfg.get('custom_hooks', []))
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) > 1e6
    for split in ('train', 'val', 'test'):
        steps = _build_pipeline(cfg, split)
        assert [type(t).__name__.split('.')[-1] for t in steps] == [
            t['type'].split('.')[-1]
            for t in cfg[f'{split}_dataloader'].dataset.pipeline]


def _build_pipeline(cfg, split):
    """The split's transforms, built in the config's scope (real classes)."""
    import importlib
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    importlib.import_module(f'{cfg.default_scope}.datasets')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return Compose(cfg[f'{split}_dataloader'].dataset.pipeline).transforms


def test_sgs_fragment_is_one_base_line_and_switchable(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import HOOKS
    import sgs_mm  # noqa: F401
    cfg_file = tmp_path / 'r18_sgs.py'
    cfg_file.write_text(
        "_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py', "
        f"'{REPO / 'configs' / '_base_' / 'sgs.py'}']\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.custom_hooks[0].type == 'SpatialGradScalingHook'
    assert 'sgs_mm' in cfg.custom_imports.imports
    hook = HOOKS.build(dict(cfg.custom_hooks[0]))
    assert type(hook).__name__ == 'SpatialGradScalingHook'
    cfg.merge_from_dict({'custom_hooks.0.k': 3,
                         'custom_hooks.0.enabled': False})
    assert cfg.custom_hooks[0].k == 3 and cfg.custom_hooks[0].enabled is False
    cfg.merge_from_dict({'custom_hooks': []})
    assert cfg.custom_hooks == []


def _pretrain_ckpt(tmp_path, depth):
    cfg = project_config(f'pretrain/resnet{depth}_8xb32_in1k.py')
    model = build_model(cfg)
    torch.manual_seed(depth)
    with torch.no_grad():  # distinguishable weights, incl. BN buffers
        for t in list(model.parameters()) + [
                b for b in model.buffers() if b.is_floating_point()]:
            t.copy_(torch.randn_like(t))
    path = tmp_path / f'r{depth}.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path, {k[len('backbone.'):]: v for k, v in
                  model.state_dict().items() if k.startswith('backbone.')}


@pytest.mark.parametrize('depth', [18, 50])
def test_pretrain_checkpoint_loads_into_both_downstream_backbones(
        tmp_path, depth):
    from sgs_mm.checkpoint import load_backbone_strict
    ckpt, ref = _pretrain_ckpt(tmp_path, depth)
    for rel in (f'pspnet/pspnet_r{depth}-d8_4xb2-80k_cityscapes-512x1024.py',
                f'pspnet/pspnet_r{depth}-d8_8xb2-paper200e_cityscapes-'
                '713x713.py',
                f'simplebaseline/td-hm_res{depth}_8xb64-210e_mpii-256x256.py',
                f'simplebaseline/td-hm_res{depth}_1xb32-paper140e_mpii-'
                '256x256.py'):
        cfg = project_config(rel, {'model.backbone.init_cfg.checkpoint': str(ckpt)})
        model = build_model(cfg)
        own = set(model.backbone.state_dict())
        assert own == set(ref), (sorted(own ^ set(ref))[:5])  # 0 missing/unexp.
        model.init_weights()  # StrictPretrained through mmengine's init path
        got = model.backbone.state_dict()
        for k, v in ref.items():
            assert torch.equal(got[k], v), (rel, k)
        info = load_backbone_strict(model.backbone, str(ckpt))
        assert info['loaded'] == len(ref)


def test_deep_stem_conversion_and_strict_mismatch(tmp_path):
    """mmpretrain ResNetV1c (ConvModule stem) -> mmseg ResNetV1c (Sequential
    stem) converts with all weights equal; plain -> deep stem raises."""
    import mmpretrain.models  # noqa: F401
    import mmseg.models  # noqa: F401
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG
    from mmengine.registry import DefaultScope
    from sgs_mm.checkpoint import BackboneKeyMismatch, load_backbone_strict

    def build(scope, reg, cfg):  # registries follow the current scope
        with DefaultScope.overwrite_default_scope(scope):
            return reg.build(cfg)

    src = build('mmpretrain', CLS, dict(type='ResNetV1c', depth=18))
    for t in src.parameters():
        torch.nn.init.normal_(t)
    sd = {'backbone.' + k: v for k, v in src.state_dict().items()}
    dst = build('mmseg', SEG, dict(type='ResNetV1c', depth=18))
    info = load_backbone_strict(dst, dict(state_dict=sd))
    assert (info['src_stem'], info['dst_stem']) == ('convmodule',
                                                    'sequential')
    assert torch.equal(dst.stem[0].weight, src.stem[0].conv.weight)
    assert torch.equal(dst.stem[7].bias, src.stem[2].bn.bias)
    plain = build('mmseg', SEG, dict(type='ResNet', depth=18))
    with pytest.raises(BackboneKeyMismatch, match='architectures differ'):
        load_backbone_strict(plain, dict(state_dict=sd))
    r34 = build('mmseg', SEG, dict(type='ResNet', depth=34))
    plain_sd = {'backbone.' + k: v for k, v in plain.state_dict().items()}
    with pytest.raises(BackboneKeyMismatch, match='missing'):
        load_backbone_strict(r34, dict(state_dict=plain_sd))


def test_strict_pretrained_without_checkpoint_names_the_option():
    cfg = project_config('demo/pspnet_r18-d8_demo.py')
    model = build_model(cfg)
    with pytest.raises(FileNotFoundError,
                       match='model.backbone.init_cfg.checkpoint'):
        model.init_weights()


def _tool(name):
    return load_script(f'tools/{name}.py')


@pytest.mark.parametrize('rel,root_key,expect', [
    ('pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py', 'data_root',
     'dataset_converters/cityscapes.py'),
    ('simplebaseline/td-hm_res18_8xb64-210e_mpii-256x256.py', 'data_root',
     'mpii_gt_val.mat'),
    ('pretrain/resnet18_8xb32_in1k.py', 'data_root', 'meta/train.txt'),
])
def test_missing_data_error_names_path_and_prepare_step(
        tmp_path, monkeypatch, rel, root_key, expect):
    from sgs_mm.launch import DatasetNotFoundError
    monkeypatch.chdir(tmp_path)  # no data/ here
    train = _tool('train')
    with pytest.raises(DatasetNotFoundError) as exc:
        train.main([str(REPO / 'configs' / rel), '--work-dir',
                    str(tmp_path / 'wd')])
    msg = str(exc.value)
    assert expect in msg
    assert "'data/" in msg  # the expected path


def test_missing_labeltrainids_and_headbox_are_reported(tmp_path):
    from sgs_mm.launch import DatasetNotFoundError, check_dataset_cfg
    root = tmp_path / 'cityscapes'
    for sub in ('leftImg8bit/val/x', 'gtFine/val/x'):
        (root / sub).mkdir(parents=True)
    (root / 'gtFine/val/x/a_gtFine_labelIds.png').write_bytes(b'')
    ds = dict(type='CityscapesDataset', data_root=str(root),
              data_prefix=dict(img_path='leftImg8bit/val',
                               seg_map_path='gtFine/val'))
    with pytest.raises(DatasetNotFoundError, match='labelTrainIds'):
        check_dataset_cfg(ds)
    mpii = tmp_path / 'mpii'
    (mpii / 'annotations').mkdir(parents=True)
    (mpii / 'images').mkdir()
    (mpii / 'annotations/mpii_val.json').write_text('[]')
    ds = dict(type='MpiiDataset', data_root=str(mpii),
              ann_file='annotations/mpii_val.json',
              data_prefix=dict(img='images/'),
              headbox_file=str(mpii / 'annotations/mpii_gt_val.mat'))
    with pytest.raises(DatasetNotFoundError,
                       match=r'head-box file .*mpii_gt_val\.mat'):
        check_dataset_cfg(ds)


def test_convert_backbone_cli_runs_without_runpy_warning(tmp_path):
    """``python -m sgs_mm.checkpoint.convert_backbone`` must not import its own
    module twice (runpy's RuntimeWarning when the package imported it first)."""
    import subprocess
    import sys
    src, dst = tmp_path / 'src.pth', tmp_path / 'dst.pth'
    torch.save(dict(state_dict={'backbone.conv1.weight': torch.ones(2, 3, 7, 7),
                                'head.fc.weight': torch.ones(1)}), src)
    proc = subprocess.run(
        [sys.executable, '-W', 'error::RuntimeWarning', '-m', 'sgs_mm.checkpoint.convert_backbone',
         str(src), str(dst), '--to', 'plain'], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert 'RuntimeWarning' not in proc.stderr
    assert list(torch.load(dst, weights_only=True)['state_dict']) == ['backbone.conv1.weight']
