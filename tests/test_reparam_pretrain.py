"""The one-line ACB / RepVGG / DBB switch for mmpretrain ResNets
(``ReparamImageClassifier`` + ``FusedCheckpointHook``) in real mmengine
Runners on the tiny generated ImageNet-format data: bad settings refused at
build time, every saved checkpoint the fused plain ResNet (strict loads into
mmpretrain's ResNet and into the PSPNet / SimpleBaseline backbones), the
branched state kept for --resume, and testing the fused network."""
from pathlib import Path

import pytest
import torch
from mm_configs import build_model, project_config

REPO = Path(__file__).resolve().parents[1]
HOOK = {'default_hooks.fused_checkpoint.type': 'FusedCheckpointHook'}


def _switch(kind):
    return {'model.type': 'ReparamImageClassifier', 'model.reparam': kind}


@pytest.mark.parametrize('rel,kind', [
    ('resnet18_8xb32-paper120e_in1k.py', 'acb'),
    ('resnet34_8xb32_in1k.py', 'repvgg'),
    ('resnet50_8xb32-paper120e_in1k.py', 'dbb'),
])
def test_switch_on_the_pretrain_configs_fuses_to_the_plain_keys(rel, kind):
    """The paper-recipe and standard configs: every 3x3 conv and the 7x7
    stem become blocks; the fused state has exactly the plain model's keys
    and shapes."""
    from sgs_mm.reparam import BranchBlock
    plain = build_model(project_config('pretrain/' + rel)).state_dict()
    model = build_model(project_config('pretrain/' + rel, _switch(kind)))
    blocks = [n for n, m in model.backbone.named_modules()
              if isinstance(m, BranchBlock)]
    depth = int(rel[6:8])
    n3x3 = {18: 16, 34: 32, 50: 16}[depth]
    assert len(blocks) == n3x3 + 1 and 'conv1' in blocks  # + the 7x7 stem
    fused = model.fused_state_dict()
    assert list(fused) == list(plain) or set(fused) == set(plain)
    assert {k: v.shape for k, v in fused.items()} == \
        {k: v.shape for k, v in plain.items()}


def test_init_weights_keeps_each_kinds_starting_values():
    """mmengine's init_cfg draws every Conv2d (Kaiming); the Lemma 1 form's
    side branches start at zero again and DBB's identity-based 1x1 at the
    identity, so the linear ACB block starts as its conv."""
    from sgs_mm.reparam import BranchBlock
    model = build_model(project_config('demo/resnet18_demo.py', _switch(
        dict(kind='acb', linear=True))))
    model.init_weights()
    block = model.backbone.layer1[0].conv1
    assert isinstance(block, BranchBlock)
    for name in ('hor', 'ver'):
        assert not block.branches[name].conv.weight.any(), name
    assert block.branches['kxk'].conv.weight.std() > 0
    dbb = build_model(project_config('demo/resnet18_demo.py', _switch('dbb')))
    dbb.init_weights()
    first = dbb.backbone.layer1[0].conv1.branches['1x1_kxk'].first
    assert not first.weight.any()  # kernel = weight + identity


def test_bad_settings_are_refused_at_build_time():
    base = project_config('demo/resnet18_demo.py')
    for reparam, match in (('acbx', "kind must be one of \\('acb', 'repvgg', "
                                    "'dbb'\\), got 'acbx'"),
                           (dict(kind='acb', linaer=True), "unknown key.*"
                                                           "linaer"),
                           (dict(kind='dbb', linear=True), 'linear=True'),
                           (None, 'must be one of')):
        cfg = base.copy()
        cfg.merge_from_dict(dict(_switch(reparam)))
        with pytest.raises(ValueError, match=match):
            build_model(cfg)
    cfg = base.copy()
    cfg.merge_from_dict(dict(_switch('acb'), **{
        'model.backbone.init_cfg': dict(type='Pretrained', checkpoint='x')}))
    with pytest.raises(ValueError, match='initialised from a checkpoint'):
        build_model(cfg)


@pytest.fixture(scope='module')
def tiny_imagenet(tmp_path_factory):
    from sgs_mm.data.synthetic import make_all
    data = tmp_path_factory.mktemp('data')
    make_all(str(data), seed=0, which=['imagenet'],
             imagenet_num_train_per_class=4, imagenet_num_val_per_class=2)
    return data / 'imagenet'


def _runner(root, work_dir, kind, hook=True, **extra):
    from mmengine.runner import Runner
    opts = {f'{s}_dataloader.dataset.data_root': str(root)
            for s in ('train', 'val', 'test')}
    opts.update({'train_dataloader.batch_size': 8,
                 'train_cfg.max_epochs': 2, 'train_cfg.val_interval': 2,
                 'default_hooks.checkpoint.interval': 1,
                 'default_hooks.checkpoint.max_keep_ckpts': 3,
                 'default_hooks.checkpoint.save_best': 'auto',
                 'train_cfg.val_begin': 1,
                 'default_hooks.logger.interval': 1,
                 'work_dir': str(work_dir)})
    if kind:
        opts.update(_switch(kind))
    if hook:
        opts.update(HOOK)
    opts.update(extra)
    return Runner.from_cfg(project_config('demo/resnet18_demo.py', opts))


def _strict_downstream(ckpt):
    """The checkpoint loads with StrictPretrained into the PSPNet and
    SimpleBaseline demo backbones, and strict into mmpretrain's ResNet."""
    from mmpretrain.registry import MODELS as CLS
    state = torch.load(ckpt, map_location='cpu', weights_only=False)
    bb = {k[len('backbone.'):]: v for k, v in state['state_dict'].items()
          if k.startswith('backbone.')}
    resnet = CLS.build(dict(type='ResNet', depth=18, out_indices=(3, )))
    resnet.load_state_dict(bb, strict=True)
    for rel in ('demo/pspnet_r18-d8_demo.py', 'demo/td-hm_res18_demo.py'):
        model = build_model(project_config(rel, {'model.backbone.init_cfg.checkpoint':
                                  str(ckpt)}))
        model.init_weights()  # StrictPretrained raises on any key mismatch
        got = model.backbone.state_dict()
        for k, v in bb.items():
            assert torch.equal(got[k], v), (rel, k)


@pytest.mark.slow
def test_switch_trains_resumes_and_hands_on_the_fused_resnet(
        tiny_imagenet, tmp_path, kind='acb'):
    """Two epochs with the switch: each epoch checkpoint's state_dict is the
    plain ResNet-18 classifier (strict loads downstream), its branched state
    sits under 'reparam'; --resume restores the branched state exactly and
    continues; testing loads the fused network and scores exactly what the
    plain ImageClassifier scores on the same checkpoint. (DBB trains through
    the same code in the pipeline chain of tests/test_pipeline.py.)"""
    wd = tmp_path / 'wd'
    runner = _runner(tiny_imagenet, wd, kind)
    runner.train()
    plain_keys = set(build_model(project_config('demo/resnet18_demo.py')).state_dict())
    best = sorted(wd.glob('best_*.pth'))
    assert len(best) == 1
    for path in [wd / 'epoch_1.pth', wd / 'epoch_2.pth'] + best:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
        assert set(ckpt['state_dict']) == plain_keys
        branched = ckpt['reparam']
        assert branched['kind'] == kind and branched['linear'] is False
        assert any('.branches.' in k for k in branched['state_dict'])
    _strict_downstream(wd / 'epoch_2.pth')
    # the fused network computes what the branched one does (eval mode)
    ckpt = torch.load(wd / 'epoch_2.pth', map_location='cpu',
                      weights_only=False)
    model = runner.model.eval()
    plain = build_model(project_config('demo/resnet18_demo.py')).eval()
    plain.load_state_dict(ckpt['state_dict'], strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x, mode='tensor'), plain(x, mode='tensor')
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())

    # resume from epoch 1: the branched state comes back exactly
    resumed = _runner(tiny_imagenet, wd, kind, resume=True,
                      load_from=str(wd / 'epoch_1.pth'),
                      **{'train_cfg.max_epochs': 1})
    resumed.train()  # nothing left to train: the loaded state stays
    want = torch.load(wd / 'epoch_1.pth', map_location='cpu',
                      weights_only=False)['reparam']['state_dict']
    got = resumed.model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    # and a resumed run continues into epoch 2
    wd2 = tmp_path / 'wd2'
    wd2.mkdir()
    import shutil
    shutil.copy(wd / 'epoch_1.pth', wd2 / 'epoch_1.pth')
    cont = _runner(tiny_imagenet, wd2, kind, resume=True,
                   load_from=str(wd2 / 'epoch_1.pth'))
    cont.train()
    assert cont.epoch == 2 and (wd2 / 'epoch_2.pth').is_file()
    _strict_downstream(wd2 / 'epoch_2.pth')

    # testing: the fused network is what gets scored
    tester = _runner(tiny_imagenet, tmp_path / 't1', kind,
                     load_from=str(wd / 'epoch_2.pth'))
    got = tester.test()
    assert tester.model.fused
    ref = _runner(tiny_imagenet, tmp_path / 't2', None, hook=False,
                  load_from=str(wd / 'epoch_2.pth')).test()
    assert got == ref


def test_training_without_the_hook_is_refused(tiny_imagenet, tmp_path):
    runner = _runner(tiny_imagenet, tmp_path / 'wd', 'acb', hook=False)
    with pytest.raises(RuntimeError, match='FusedCheckpointHook'):
        runner.train()


def test_hook_on_a_plain_model_is_refused(tiny_imagenet, tmp_path):
    runner = _runner(tiny_imagenet, tmp_path / 'wd', None)
    with pytest.raises(TypeError, match='ReparamImageClassifier'):
        runner.train()


def test_sgs_and_blocks_in_one_run_are_refused(tiny_imagenet, tmp_path):
    sgs = {'custom_hooks': [dict(type='SpatialGradScalingHook')]}
    runner = _runner(tiny_imagenet, tmp_path / 'wd', 'acb', **sgs)
    with pytest.raises(ValueError, match='SpatialGradScalingHook and a '
                       'branched model'):
        runner.train()
