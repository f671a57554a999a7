"""The paper-recipe configs resolve to the values of the paper and of the
code it names (PAPER.md Sec. 4.2 + Ascend-Research/Reparameterization for
ImageNet, A.4 + hszhao/semseg for PSPNet, A.4 + xingyizhou/pytorch-pose-hg-3d
for SimpleBaseline); every *_sgs.py config is exactly its baseline plus the
SGS hook; the pipeline specs chain the paper-recipe configs.

Config-level checks only (Config.fromfile, a few optimiser builds): no data,
no training. The epoch -> iteration conversion of the hook itself is tested
with the hook (tests of sgs_mm/hooks)."""
import copy
import functools
import math
import re
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
DEPTHS = (18, 34, 50)
CITYSCAPES_TRAIN = 2975  # images in leftImg8bit/train


@functools.lru_cache(maxsize=None)
def _cfg_cached(rel):
    from mmengine.config import Config
    return Config.fromfile(str(CONFIGS / rel))


def _cfg(rel):
    """The resolved config (parsed once per test session; a private copy)."""
    return copy.deepcopy(_cfg_cached(rel))


def _pipe(cfg, split='train'):
    return {t['type']: t for t in
            cfg[f'{split}_dataloader']['dataset']['pipeline']}


def paper_pretrain(d):
    return f'pretrain/resnet{d}_8xb32-paper120e_in1k.py'


def paper_pspnet(d):
    return f'pspnet/pspnet_r{d}-d8_8xb2-paper200e_cityscapes-713x713.py'


def paper_pose(d):
    return f'simplebaseline/td-hm_res{d}_1xb32-paper140e_mpii-256x256.py'


def _sgs(rel):
    return rel[:-3] + '_sgs.py'


# ------------------------------------------------------------- ImageNet
# (resolved key, expected value, source)
PRETRAIN_TABLE = [
    ('train_cfg.max_epochs', 120, 'paper 4.2: 120 epochs'),
    ('train_dataloader.batch_size', 32, 'paper 4.2: batch 256 = 8 x 32'),
    ('train_dataloader.drop_last', True,
     'image_classification_sota builder.py'),
    ('optim_wrapper.optimizer.type', 'SGD', 'paper 4.2'),
    ('optim_wrapper.optimizer.lr', 0.1, 'paper 4.2'),
    ('optim_wrapper.optimizer.momentum', 0.9,
     'authors resnet.yaml (paper text: 0.1, a typo)'),
    ('optim_wrapper.optimizer.nesterov', True, 'authors args.py/optim.py'),
    ('optim_wrapper.optimizer.weight_decay', 1e-4, 'paper 4.2'),
    ('optim_wrapper.paramwise_cfg.norm_decay_mult', 0.0, 'authors optim.py'),
    ('optim_wrapper.paramwise_cfg.bias_decay_mult', 0.0, 'authors optim.py'),
    ('param_scheduler.type', 'CosineAnnealingLR', 'paper 4.2'),
    ('param_scheduler.T_max', 120, 'paper 4.2'),
    ('param_scheduler.eta_min', 1e-7, 'authors resnet.yaml min_lr'),
    ('param_scheduler.convert_to_iter_based', True,
     'authors resnet.yaml decay_by_epoch: false'),
    ('randomness.seed', 42, 'authors resnet.yaml seed'),
    ('model.backbone.zero_init_residual', False,
     'image_classification_sota lib/models/resnet.py default'),
    ('model.head.init_cfg', None, 'torchvision: nn.Linear default init'),
]


def _get(cfg, dotted):
    node = cfg
    for part in dotted.split('.'):
        node = node[part]
    return node


@pytest.mark.parametrize('depth', DEPTHS)
def test_pretrain_paper_recipe_values(depth):
    cfg = _cfg(paper_pretrain(depth))
    for key, want, source in PRETRAIN_TABLE:
        assert _get(cfg, key) == want, (key, source)
    assert cfg.model.backbone.depth == depth
    jitter = _pipe(cfg)['ColorJitter']
    assert (jitter.brightness, jitter.contrast, jitter.saturation) == \
        (0.06, 0.06, 0.06)  # authors resnet.yaml color_jitter: 0.06
    assert 'hue' not in jitter
    assert _pipe(cfg)['RandomResizedCrop'].scale == 224
    assert _pipe(cfg, 'test')['CenterCrop'].crop_size == 224
    # lib/dataset: PIL decoding (convert('RGB')) and PIL bilinear resizes
    for split in ('train', 'val', 'test'):
        load = _pipe(cfg, split)['LoadImageFromFile']
        assert (load.imdecode_backend, load.color_type) == \
            ('pillow', 'color_ignore_orientation')
    for split, step in (('train', 'RandomResizedCrop'), ('val', 'ResizeEdge'),
                        ('test', 'ResizeEdge')):
        t = _pipe(cfg, split)[step]
        assert (t.backend, t.get('interpolation', 'bilinear')) == \
            ('pillow', 'bilinear'), (split, step)
    assert (_pipe(cfg, 'test')['ResizeEdge'].scale,
            _pipe(cfg, 'test')['ResizeEdge'].edge) == (256, 'short')


@pytest.mark.parametrize('depth', [18, 50])
def test_pretrain_paper_init_is_torchvision_default(depth):
    """After init_weights (as the Runner does): the last BN of every block
    starts at weight 1 (zero_init_residual=False) and the fc has PyTorch's
    nn.Linear default (uniform within +-1/sqrt(fan_in), nonzero bias)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = _cfg(paper_pretrain(depth))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    model.init_weights()
    last_bns = [m.norm3 if hasattr(m, 'norm3') else m.norm2
                for m in model.backbone.modules()
                if type(m).__name__ in ('BasicBlock', 'Bottleneck')]
    assert last_bns and all(torch.all(bn.weight == 1) for bn in last_bns)
    fc = model.head.fc
    bound = 1 / math.sqrt(fc.in_features)
    assert fc.weight.abs().max() <= bound and fc.bias.abs().max() <= bound
    assert fc.weight.std().item() == pytest.approx(bound / math.sqrt(3),
                                                   rel=0.02)  # not 0.01
    assert fc.bias.abs().sum() > 0
    conv = model.backbone.layer1[0].conv1  # Kaiming normal, fan_out
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(
        math.sqrt(2 / fan_out), rel=0.1)


def test_pretrain_paper_optimizer_groups():
    """Built on a real ResNet-18: Nesterov SGD, no decay on BN and biases."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    cfg = _cfg(paper_pretrain(18))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    decay = {names[id(p)]: g['weight_decay']
             for g in wrapper.optimizer.param_groups for p in g['params']}
    assert decay['backbone.conv1.weight'] == 1e-4
    assert decay['head.fc.weight'] == 1e-4
    assert decay['backbone.bn1.weight'] == 0 and decay['head.fc.bias'] == 0
    assert all(v == 0 for k, v in decay.items()
               if k.endswith('.bias') or '.bn' in k or 'downsample.1' in k)
    assert all(g['nesterov'] for g in wrapper.optimizer.param_groups)


# ------------------------------------------------------------------- PSPNet
def _pspnet_iters(epochs=200, gpus=8, per_gpu=2, images=CITYSCAPES_TRAIN):
    """SemSeg tool/train.py: DistributedSampler pads to a multiple of the GPU
    count, drop_last per GPU: max_iter = epochs * len(train_loader)."""
    return epochs * (math.ceil(images / gpus) // per_gpu)


PSPNET_TABLE = [
    ('model.data_preprocessor.size', (713, 713), 'yaml train_h/train_w'),
    ('train_dataloader.batch_size', 2, 'yaml batch_size 16 over 8 GPUs'),
    ('train_cfg.max_iters', _pspnet_iters(), 'yaml epochs 200 (186 it/epoch)'),
    ('optim_wrapper.optimizer.type', 'SGD', 'train.py'),
    ('optim_wrapper.optimizer.lr', 0.01, 'yaml base_lr'),
    ('optim_wrapper.optimizer.momentum', 0.9, 'yaml momentum'),
    ('optim_wrapper.optimizer.weight_decay', 1e-4, 'yaml weight_decay'),
    ('optim_wrapper.paramwise_cfg.custom_keys.decode_head.lr_mult', 10.0,
     'train.py base_lr * 10 for ppm/cls'),
    ('optim_wrapper.paramwise_cfg.custom_keys.auxiliary_head.lr_mult', 10.0,
     'train.py base_lr * 10 for aux'),
    ('model.decode_head.channels', 512, 'model/pspnet.py cls 512'),
    ('model.auxiliary_head.channels', 256, 'model/pspnet.py aux 256'),
    ('model.decode_head.pool_scales', (1, 2, 3, 6), 'model/pspnet.py bins'),
    ('model.decode_head.dropout_ratio', 0.1, 'model/pspnet.py dropout'),
    ('model.auxiliary_head.loss_decode.loss_weight', 0.4, 'yaml aux_weight'),
    ('model.decode_head.loss_decode.avg_non_ignore', True,
     'train.py CrossEntropyLoss(ignore_index=255)'),
    ('model.decode_head.align_corners', True, 'model/pspnet.py'),
    ('model.type', 'SoftmaxSlideEncoderDecoder',
     'test.py net_process softmax, scale_process averaging'),
    ('model.test_cfg.window_flip', True, 'test.py net_process flip'),
    ('model.backbone.type', 'FullyDilatedResNet',
     'model/pspnet.py every 3x3 conv of layer3/4 dilated'),
    ('model.auxiliary_head.type', 'TorchDefaultInitFCNHead',
     'model/pspnet.py aux: PyTorch default init'),
    ('model.backbone.contract_dilation', False, 'model/pspnet.py'),
    ('model.backbone.dilations', (1, 1, 2, 4), 'model/pspnet.py'),
    ('model.backbone.norm_cfg.type', 'SyncBN', 'yaml sync_bn'),
    ('model.test_cfg.mode', 'slide', 'test.py scale_process'),
    ('model.test_cfg.crop_size', (713, 713), 'yaml test_h/test_w'),
    ('model.test_cfg.stride', (476, 476), 'test.py stride_rate 2/3'),
]


def _build_head(head_cfg):
    import sgs_mm.models  # noqa: F401  registers SemSegPSPHead
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    head_cfg = head_cfg.to_dict() if hasattr(head_cfg, 'to_dict') else dict(head_cfg)
    head_cfg['norm_cfg'] = dict(type='BN', requires_grad=True)
    with DefaultScope.overwrite_default_scope('mmseg'):  # other tests leave theirs
        return MODELS.build(head_cfg)


@pytest.mark.parametrize('depth', DEPTHS)
def test_pspnet_paper_recipe_values(depth):
    cfg = _cfg(paper_pspnet(depth))
    for key, want, source in PSPNET_TABLE:
        got = _get(cfg, key)
        got = tuple(got) if isinstance(got, list) else got
        assert got == want, (key, got, source)
    assert _pspnet_iters() == 37200
    c5, c4 = (2048, 1024) if depth == 50 else (512, 256)
    assert (cfg.model.backbone.depth, cfg.model.decode_head.in_channels,
            cfg.model.auxiliary_head.in_channels) == (depth, c5, c4)
    # model/pspnet.py: reduction_dim = fea_dim / len(bins)
    assert cfg.model.decode_head.type == 'SemSegPSPHead'
    head = _build_head(cfg.model.decode_head)
    assert [branch[1].conv.out_channels for branch in head.psp_modules] == [c5 // 4] * 4
    assert head.bottleneck.conv.in_channels == 2 * c5
    assert head.bottleneck.conv.out_channels == 512
    head.eval()
    feats = [torch.randn(1, 8, 12, 12)] * 2 + [torch.randn(1, c4, 12, 12), torch.randn(1, c5, 12, 12)]
    out = head(feats)
    assert out.shape == (1, 19, 12, 12)
    sched, = cfg.param_scheduler  # poly 0.9 per iteration, SemSeg's end
    assert (sched.type, sched.power, sched.eta_min, sched.end,
            sched.by_epoch) == ('PolyLR', 0.9, 0.0, 37200 + 1, False)
    pipe = _pipe(cfg)
    assert tuple(pipe['RandomResize'].ratio_range) == (0.5, 2.0)
    assert (pipe['RandomRotate'].degree, pipe['RandomRotate'].prob,
            pipe['RandomRotate'].seg_pad_val) == (10, 0.5, 255)
    assert pipe['mmpretrain.GaussianBlur'].prob == 0.5
    assert pipe['RandomFlip'].prob == 0.5
    assert tuple(pipe['RandomCrop'].crop_size) == (713, 713)
    assert pipe['RandomCrop'].cat_max_ratio == 1.0
    pad = pipe['CentredPad']  # util/transform.py Crop(padding=mean)
    assert (tuple(pad.size), tuple(pad.pad_val), pad.seg_pad_val) == \
        ((713, 713), (103.53, 116.28, 123.675), 255)
    assert 'PhotoMetricDistortion' not in pipe  # not in SemSeg
    order = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert order.index('RandomResize') < order.index('RandomRotate') < \
        order.index('mmpretrain.GaussianBlur') < order.index('RandomFlip') < \
        order.index('RandomCrop')  # util/transform.Compose order in train.py
    assert order.index('CentredPad') + 1 == order.index('RandomCrop')
    assert tuple(_pipe(cfg, 'test')['Resize'].scale) == (2048, 1024)


def test_pspnet_paper_train_pipeline_runs(tmp_path):
    """The mmseg pipeline with mmpretrain's GaussianBlur and a per-channel
    rotation padding builds and produces 713x713 crops."""
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS
    from sgs_mm.data.synthetic import make_cityscapes
    make_cityscapes(str(tmp_path), num_train=1, num_val=1)
    cfg = _cfg(paper_pspnet(18))
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = str(tmp_path)
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = DATASETS.build(ds_cfg)
        sample = ds[0]
    assert tuple(sample['inputs'].shape[1:]) <= (713, 713)
    assert 'GaussianBlur' in repr(ds.pipeline)


def test_pspnet_paper_heads_get_ten_times_the_lr():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    from sgs_mm.launch.runner import syncbn_to_bn
    import sgs_mm.checkpoint  # noqa: F401
    cfg = _cfg(paper_pspnet(18))
    syncbn_to_bn(cfg.model)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for g in wrapper.optimizer.param_groups:
        for p in g['params']:
            lr[names[id(p)].split('.')[0]] = g['lr']
    assert lr == {'backbone': 0.01, 'decode_head': 0.1,
                  'auxiliary_head': 0.1}
    # every 3x3 conv of layer3/4 dilated (no contraction), conv2 included
    for layer, d in ((model.backbone.layer3, 2), (model.backbone.layer4, 4)):
        for block in layer:
            assert block.conv1.dilation == block.conv2.dilation == (d, d)
            assert block.conv2.padding == (d, d)


def test_pspnet_paper_poly_schedule_is_semseg_formula():
    """util.poly_learning_rate, set after every iteration: iteration i
    (0-based) runs at base_lr * (1 - i / max_iter) ** 0.9, the x10 groups
    alike; built by mmengine from the config on a real optimizer."""
    from mmengine.registry import PARAM_SCHEDULERS
    cfg = _cfg(paper_pspnet(18))
    max_iter = cfg.train_cfg.max_iters
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(
        torch.zeros(1))
    opt = torch.optim.SGD([dict(params=[a], lr=0.01),
                           dict(params=[b], lr=0.1)], lr=0.01, momentum=0.9)
    sched = PARAM_SCHEDULERS.build(dict(cfg.param_scheduler[0],
                                        optimizer=opt))
    for i in range(max_iter):
        want = (1 - i / max_iter) ** 0.9
        lrs = [g['lr'] for g in opt.param_groups]
        assert lrs == pytest.approx([0.01 * want, 0.1 * want], rel=1e-6,
                                    abs=1e-12), i
        sched.step()
    assert lrs[0] > 0  # the last iteration's lr is not 0 (mmengine's end - 1)


# ------------------------------------------------------------ SimpleBaseline
POSE_TABLE = [
    ('train_cfg.max_epochs', 140, 'opts num_epochs'),
    ('train_dataloader.batch_size', 32, 'opts batch_size, 1 GPU'),
    ('optim_wrapper.optimizer.type', 'Adam', 'model.py'),
    ('optim_wrapper.optimizer.lr', 1e-3, 'opts lr'),
    ('optim_wrapper.optimizer.weight_decay', 0.0, 'opts weight_decay'),
    ('auto_scale_lr.base_batch_size', 32, 'opts batch_size'),
    ('codec.input_size', (256, 256), 'opts input_h/input_w'),
    ('codec.heatmap_size', (64, 64), 'opts output_h/output_w'),
    ('codec.sigma', 2, 'opts hm_gauss'),
    ('model.head.deconv_out_channels', (256, 256, 256), 'msra_resnet.py'),
    ('model.head.deconv_kernel_sizes', (4, 4, 4), 'msra_resnet.py'),
    ('model.head.loss.use_target_weight', False, 'train.py MSELoss'),
    ('model.test_cfg.flip_test', True, 'train.py val flip'),
    ('model.test_cfg.shift_heatmap', False, 'train.py val flip'),
    ('val_evaluator.type', 'MpiiPCKhMeans',
     'eval_PCKh.py Mean + the MPII weighted total'),
    ('test_evaluator.type', 'MpiiPCKhMeans', 'eval_PCKh.py'),
    ('model.data_preprocessor.mean',
     (0.485 * 256, 0.456 * 256, 0.406 * 256), 'mpii.py img / 256'),
    ('model.data_preprocessor.std',
     (0.229 * 256, 0.224 * 256, 0.225 * 256), 'mpii.py img / 256'),
]


@pytest.mark.parametrize('depth', DEPTHS)
def test_pose_paper_recipe_values(depth):
    cfg = _cfg(paper_pose(depth))
    for key, want, source in POSE_TABLE:
        got = _get(cfg, key)
        got = tuple(got) if isinstance(got, list) else got
        assert got == want, (key, got, source)
    sched, = cfg.param_scheduler  # no warm-up, steps at 90 and 120
    assert (sched.type, tuple(sched.milestones), sched.gamma, sched.end) == \
        ('MultiStepLR', (90, 120), 0.1, 140)
    aug = _pipe(cfg)['ClippedNormalBBoxTransform']  # mpii.py, opts
    assert (aug.scale_std, tuple(aug.scale_range), aug.rotate_std,
            tuple(aug.rotate_range), aug.rotate_prob) == \
        (0.25, (0.75, 1.25), 30.0, (-60.0, 60.0), 0.6)
    assert 'RandomBBoxTransform' not in _pipe(cfg)
    # mpii.py: s = min(s, max(img.shape)) after the scale draw, and in test
    for split, after in (('train', 'ClippedNormalBBoxTransform'),
                         ('val', 'GetBBoxCenterScale'),
                         ('test', 'GetBBoxCenterScale')):
        order = [t['type'] for t in
                 cfg[f'{split}_dataloader']['dataset']['pipeline']]
        assert order.index('ClampBBoxScaleToImage') == \
            order.index(after) + 1 == order.index('TopdownAffine') - 1
    assert _pipe(cfg)['RandomFlip'].prob == 0.5  # opts flip
    assert cfg.model.backbone.depth == depth
    assert cfg.model.head.in_channels == (2048 if depth == 50 else 512)


# ---------------------------------------------------------------- SGS hooks
IMAGENET_SGS = dict(method='nmi', k=5, interval=5, warmup=1, unit='epoch',
                    num_batches=2, diag_removal=True, mode='grad')
DOWNSTREAM_SGS = dict(IMAGENET_SGS, diag_removal=False)
# the paper configs state both open choices (one line each)
PAPER_DOWNSTREAM_SGS = dict(DOWNSTREAM_SGS, respect_dilation=True)
SGS_TABLE = [(_sgs(paper_pretrain(d)), IMAGENET_SGS) for d in DEPTHS] + \
    [(f'pretrain/resnet{d}_8xb32_in1k_sgs.py', IMAGENET_SGS)
     for d in DEPTHS] + \
    [(_sgs(paper_pspnet(d)), PAPER_DOWNSTREAM_SGS) for d in DEPTHS] + \
    [(f'pspnet/pspnet_r{d}-d8_4xb2-80k_cityscapes-512x1024_sgs.py',
      DOWNSTREAM_SGS) for d in DEPTHS] + \
    [(_sgs(paper_pose(d)), PAPER_DOWNSTREAM_SGS) for d in DEPTHS] + \
    [(f'simplebaseline/td-hm_res{d}_8xb64-210e_mpii-256x256_sgs.py',
      DOWNSTREAM_SGS) for d in DEPTHS]


@pytest.mark.parametrize('rel,want', SGS_TABLE,
                         ids=[r for r, _ in SGS_TABLE])
def test_sgs_hook_arguments(rel, want):
    from mmengine.registry import HOOKS
    import sgs_mm  # noqa: F401
    cfg = _cfg(rel)
    hooks = [h for h in cfg.custom_hooks
             if h.type == 'SpatialGradScalingHook']
    assert len(hooks) == 1 and cfg.custom_hooks[0] is not None
    hook = hooks[0]
    assert {k: hook.get(k) for k in want} == want
    assert hook.get('enabled', True) is True
    built = HOOKS.build(dict(hook))  # the hook accepts every argument
    assert built.unit == 'epoch'


# ------------------------------------------------------ baseline/SGS pairs
def _sgs_pairs():
    out = []
    for p in sorted(CONFIGS.rglob('*_sgs.py')):
        rel = str(p.relative_to(CONFIGS))
        if rel.startswith('_base_'):
            continue
        out.append((rel.replace('_sgs.py', '.py'), rel))
    return out


def _flatten(obj, prefix=''):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f'{prefix}{k}.'))
        return out or {prefix[:-1]: {}}
    if isinstance(obj, (list, tuple)):
        return {prefix[:-1]: [_flatten(v) if isinstance(v, dict) else v
                              for v in obj]}
    return {prefix[:-1]: obj}


def test_every_sgs_config_has_a_baseline():
    pairs = _sgs_pairs()
    assert len(pairs) == 3 * 2 + 3 * 2 + 3 * 2 + 3  # pretrain/seg/pose/demo
    for base, _ in pairs:
        assert (CONFIGS / base).is_file(), base


@pytest.mark.parametrize('base,sgs', _sgs_pairs(),
                         ids=[s for _, s in _sgs_pairs()])
def test_sgs_config_is_baseline_plus_hook(base, sgs):
    """Resolved configs differ by the SGS hook only, and (SGS chain) by the
    backbone checkpoint: the SGS-pretrained one of the same recipe."""
    b, s = _cfg(base).to_dict(), _cfg(sgs).to_dict()
    fb, fs = _flatten(b), _flatten(s)
    diff = {k for k in set(fb) | set(fs) if fb.get(k, '<absent>') !=
            fs.get(k, '<absent>')}
    ckpt = 'model.backbone.init_cfg.checkpoint'
    assert diff <= {'custom_hooks', ckpt}, sorted(diff)
    assert 'custom_hooks' in diff
    assert s['custom_imports'] == b['custom_imports']
    # the hook list is the baseline's plus one SGS hook
    rest = [h for h in s['custom_hooks']
            if h['type'] != 'SpatialGradScalingHook']
    assert rest == b.get('custom_hooks', [])
    assert len(s['custom_hooks']) == len(rest) + 1
    if ckpt in diff:
        got, want = fs[ckpt], fb[ckpt]
        run, name = want.rsplit('/', 1)
        assert got == f'{run}_sgs/{name}', (got, want)


# ------------------------------------------------------------ pipeline specs
@pytest.mark.parametrize('depth', DEPTHS)
def test_pipeline_spec_chains_the_paper_recipes(depth):
    from sgs_mm.launch.pipeline import load_spec
    spec = load_spec(str(CONFIGS / 'pipeline' / f'paper_r{depth}.py'))
    by_name = {s['name']: s for s in spec['stages']}
    want = {
        f'pretrain_r{depth}': (paper_pretrain(depth), None, 8),
        f'pretrain_r{depth}_sgs': (_sgs(paper_pretrain(depth)), None, 8),
        f'pspnet_r{depth}': (paper_pspnet(depth), f'pretrain_r{depth}', 8),
        f'pspnet_r{depth}_sgs': (_sgs(paper_pspnet(depth)),
                                 f'pretrain_r{depth}_sgs', 8),
        f'simplebaseline_r{depth}': (paper_pose(depth),
                                     f'pretrain_r{depth}', 1),
        f'simplebaseline_r{depth}_sgs': (_sgs(paper_pose(depth)),
                                         f'pretrain_r{depth}_sgs', 1),
    }
    assert set(by_name) == set(want)
    for name, (rel, init_from, nproc) in want.items():
        st = by_name[name]
        assert st['config'] == f'configs/{rel}', name
        assert st.get('init_from') == init_from and st['nproc'] == nproc
        assert st.get('init_ckpt', 'last') == 'last'  # final checkpoint
        if init_from:
            # the config's default checkpoint = the upstream's final one
            up = by_name[init_from]['config']
            epochs = _cfg(up[len('configs/'):]).train_cfg.max_epochs
            ckpt = _cfg(rel).model.backbone.init_cfg.checkpoint
            assert ckpt == (f'work_dirs/{Path(up).stem}/'
                            f'epoch_{epochs}.pth'), (name, ckpt)



@pytest.mark.parametrize('depth', DEPTHS)
def test_pipeline_diag_removal_column_is_one_cfg_option_away(depth):
    """paper_rD.py carries a disabled stage: PSPNet with SGS and
    diag_removal=True from the SGS pretrain, shown as its own Table 7
    variant; ``--cfg-options stages.<name>.enabled=True`` adds it, and
    nothing else of the spec changes (same work_root: finished stages are
    reused)."""
    from mmengine.config import Config
    from mmengine.registry import HOOKS
    import sgs_mm  # noqa: F401
    from sgs_mm.launch.pipeline import (load_spec, split_stage_options,
                                        stage_commands)
    path = str(CONFIGS / 'pipeline' / f'paper_r{depth}.py')
    name = f'pspnet_r{depth}_sgs_diag_removal'
    base = load_spec(path)
    assert name not in [s['name'] for s in base['stages']]
    stage_opts, rest = split_stage_options({f'stages.{name}.enabled': True})
    assert rest == {}
    spec = load_spec(path, stage_opts)
    assert spec['work_root'] == base['work_root']
    assert spec['stages'][:-1] == base['stages']
    extra = spec['stages'][-1]
    assert extra['name'] == name and extra['enabled'] is True
    assert extra['config'] == f'configs/{_sgs(paper_pspnet(depth))}'
    assert extra['init_from'] == f'pretrain_r{depth}_sgs'
    assert extra['table'] == dict(model=f'PSPNet-{depth}',
                                  variant='SGS diag_removal')
    train, _ = stage_commands(extra, 'wd', 'ckpt.pth')
    opts = train[train.index('--cfg-options') + 1:]
    assert 'custom_hooks.0.diag_removal=True' in opts
    cfg = Config.fromfile(str(CONFIGS / _sgs(paper_pspnet(depth))))
    cfg.merge_from_dict(extra['cfg_options'])
    hook = HOOKS.build(dict(cfg.custom_hooks[0]))
    assert hook.options.diag_removal is True
    assert hook.options.respect_dilation is True


@pytest.mark.parametrize('rel', [_sgs(f(d)) for f in (paper_pspnet,
                                                      paper_pose)
                                 for d in DEPTHS])
def test_open_sgs_choices_are_one_line_each(rel):
    """diag_removal and respect_dilation: one line each in the SGS block."""
    lines = (CONFIGS / rel).read_text().splitlines()
    for arg in ('diag_removal=False', 'respect_dilation=True'):
        assert sum(line.strip().startswith(arg) for line in lines) == 1, arg


# ----------------------------------------------------------- config headers
def _standard_configs():
    return [str(p.relative_to(CONFIGS)) for sub in
            ('pretrain', 'pspnet', 'simplebaseline')
            for p in sorted((CONFIGS / sub).glob('*.py'))
            if 'paper' not in p.name]


@pytest.mark.parametrize('rel', _standard_configs())
def test_standard_configs_say_they_are_openmmlab_recipes(rel):
    text = (CONFIGS / rel).read_text()
    header = text.split('_base_')[0]
    assert re.search(r"OpenMMLab's standard", header), rel
    assert not re.search(r'as in the SGS paper|paper.s Table', text), rel
