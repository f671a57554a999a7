"""The OpenMMLab stack with the SGS hook on each device (issue 14): a real
mmseg PSPNet-R18-D8, mmpose SimpleBaseline-R18 and mmpretrain ResNet-18
training step in a real mmengine Runner, fp32 and (CUDA only) AMP fp16, and a
refresh through the hook with the data preprocessor.

Every test runs for ``device`` in ['cpu', 'cuda'] (cuda skipped without a GPU),
so the CPU run proves the same logic a GPU run checks. Inside the one training
step, for every KxK conv weight the hook scales:

- the gradient the optimizer receives (a step pre-hook, after AMP's unscale)
  is exactly (``torch.equal``) G times the gradient autograd produced for that
  weight in the same backward without SGS (a tensor hook registered before
  the SGS hook's; with AMP fp16 the raw gradient carries the loss scale, so
  the expected one is ``raw * G / scale``, exact for a power-of-two scale);
- plain SGD moves the weight by ``-lr`` times that received gradient (to
  float32 rounding of the new weight).

Nothing is downloaded: models come from the configs the packages ship, with
random weights and synthetic images.
"""
import math
import uuid

import pytest
import torch
import torch.nn as nn
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmengine.structures import InstanceData, PixelData
from torch.utils.data import DataLoader

import sgs_mm
from mm_configs import no_syncbn, shipped_config
from sgs_mm.sgs import SpatialGradScaler

LR = 0.01
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
DEVICES = [pytest.param('cpu', id='cpu'), pytest.param('cuda', id='cuda', marks=CUDA)]
# (device, precision): AMP fp16 (GradScaler) is a CUDA path
CASES = [pytest.param('cpu', 'fp32', id='cpu-fp32'),
         pytest.param('cuda', 'fp32', id='cuda-fp32', marks=CUDA),
         pytest.param('cuda', 'fp16', id='cuda-fp16', marks=CUDA)]
# refresh before the first (and only) step; the unit is given explicitly
HOOK = dict(type='SpatialGradScalingHook', unit='iter', warmup=0, interval=100,
            num_batches=1, history_file=None, log_heatmaps=False)


@pytest.fixture
def on_device(monkeypatch):
    """Make the Runner put the model on ``device``: mmengine's Runner moves it
    to ``get_device()``, which is 'cuda' wherever a GPU is visible."""
    import mmengine.runner.runner as runner_module

    def use(device):
        monkeypatch.setattr(runner_module, 'get_device', lambda: device)
        return device
    return use


class GradCapture(Hook):
    """Records, for every Conv2d weight with a kernel larger than 1x1, the
    gradient autograd produces (a tensor hook registered before the SGS
    hook's: this hook's before_train runs first), the gradient and weight at
    ``optimizer.step()`` and the weight after it."""
    priority = 'ABOVE_NORMAL'  # before SpatialGradScalingHook (NORMAL)

    def before_train(self, runner):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        self.weights = {id(m.weight): m.weight for m in model.modules()
                        if isinstance(m, nn.Conv2d) and max(m.kernel_size) > 1}
        self.raw, self.received, self.before, self.after = {}, {}, {}, {}
        self.loss_scale = None
        for key, w in self.weights.items():
            w.register_hook(self._raw_hook(key))
        opt = runner.optim_wrapper.optimizer
        opt.register_step_pre_hook(self._pre)
        opt.register_step_post_hook(self._post)
        self.wrapper = runner.optim_wrapper

    def _raw_hook(self, key):
        def hook(grad):
            assert key not in self.raw, 'one backward per weight expected'
            self.raw[key] = grad.detach().clone()
        return hook

    @torch.no_grad()
    def _pre(self, opt, args, kwargs):
        scaler = getattr(self.wrapper, 'loss_scaler', None)
        self.loss_scale = None if scaler is None else float(scaler.get_scale())
        for key, w in self.weights.items():
            self.received[key] = w.grad.detach().clone()
            self.before[key] = w.detach().clone()

    @torch.no_grad()
    def _post(self, opt, args, kwargs):
        for key, w in self.weights.items():
            self.after[key] = w.detach().clone()


def sgs_hook(runner):
    return next(h for h in runner.hooks if isinstance(h, sgs_mm.SpatialGradScalingHook))


def train_one_step(tmp_path, model_cfg, scope, items, precision):
    """A real Runner: refresh G through the hook at iteration 0, then one
    training step; returns (runner, GradCapture)."""
    optimizer = dict(type='SGD', lr=LR)  # plain SGD: the step is -lr * gradient
    if precision == 'fp16':
        optim_wrapper = dict(type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic',
                             optimizer=optimizer)
    else:
        optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer)
    capture = GradCapture()
    runner = Runner(
        model=model_cfg, work_dir=str(tmp_path), default_scope=scope,
        experiment_name=f'sgs_stack_{uuid.uuid4().hex[:12]}',
        train_dataloader=DataLoader(items, batch_size=2, shuffle=False,
                                    collate_fn=pseudo_collate),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=1),
        optim_wrapper=optim_wrapper, custom_hooks=[HOOK, capture],
        default_hooks=dict(checkpoint=None, logger=dict(type='LoggerHook', interval=1000)),
        randomness=dict(seed=0), log_level='WARNING')
    runner.train()
    return runner, capture


def check_gradients_are_g_times(runner, capture, device, precision, num_layers):
    hook = sgs_hook(runner)
    assert hook.num_refreshes == 1
    applier = hook.applier
    assert len(applier.weights) == num_layers, list(applier.weights)
    assert {id(w) for w in applier.weights.values()} <= set(capture.weights)
    assert capture.received, 'optimizer.step() did not run (fp16 overflow?)'
    if precision == 'fp16':
        assert capture.loss_scale is not None and capture.loss_scale > 1
        assert math.log2(capture.loss_scale).is_integer()
    scaled = 0
    for name, w in applier.weights.items():
        key = id(w)
        g = applier.scales[name]
        assert g.device.type == device and w.device.type == device, name
        assert not torch.equal(g, torch.ones_like(g)), f'{name}: G stayed 1'
        raw, got = capture.raw[key], capture.received[key]
        assert raw.dtype == got.dtype == torch.float32 and got.device.type == device
        expected = raw * g.to(raw.device, raw.dtype)
        if precision == 'fp16':  # GradScaler.unscale_: times 1/scale (a power of two)
            inv = torch.tensor(1.0 / capture.loss_scale, dtype=torch.float32, device=raw.device)
            expected = expected * inv
        assert torch.equal(got, expected), (
            f'{name}: received gradient != G x raw gradient '
            f'(max diff {(got - expected).abs().max().item():.3g})')
        scaled += int(not torch.equal(got, raw))
        # plain SGD: W <- W - lr * (G x raw), to float32 rounding of the sum
        before, after = capture.before[key], capture.after[key]
        torch.testing.assert_close(after, before.add(got, alpha=-LR), rtol=5e-7, atol=1e-30)
        assert not torch.equal(after, before), name
    assert scaled == num_layers


def _images(n, h, w):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for _ in range(n)]


def pspnet_setup():
    import mmseg.models  # noqa: F401
    from mmseg.structures import SegDataSample
    cfg = shipped_config('mmseg', 'pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    model = no_syncbn(cfg.model.to_dict())
    model['pretrained'] = None
    # zero-initialised last BN of each block would make its convs' gradients 0
    model['backbone'].update(init_cfg=None, zero_init_residual=False)
    h, w = 64, 128
    model['data_preprocessor']['size'] = (h, w)
    g = torch.Generator().manual_seed(1)
    items = []
    for img in _images(2, h, w):
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        s.gt_sem_seg = PixelData(data=torch.randint(0, 19, (1, h, w), generator=g))
        items.append(dict(inputs=img, data_samples=s))
    # stem 3 convs, 8 basic blocks x 2, PSP bottleneck, FCN auxiliary conv
    return model, 'mmseg', items, 3 + 16 + 2


def simplebaseline_setup():
    import mmpose.models  # noqa: F401
    from mmpose.structures import PoseDataSample
    cfg = shipped_config('mmpose', 'body_2d_keypoint/topdown_heatmap/mpii/'
                         'td-hm_res50_8xb64-210e_mpii-256x256.py')
    model = cfg.model.to_dict()
    model['backbone'].update(depth=18, init_cfg=None, zero_init_residual=False)
    model['head']['in_channels'] = 512
    model['test_cfg'] = dict(flip_test=False)
    k, h, w = model['head']['out_channels'], 128, 128
    g = torch.Generator().manual_seed(1)
    items = []
    for img in _images(2, h, w):
        s = PoseDataSample(metainfo=dict(
            img_shape=(h, w), input_size=(w, h), input_center=(w / 2, h / 2),
            input_scale=(w, h), flip_indices=list(range(k))))
        s.gt_fields = PixelData(heatmaps=torch.rand(k, h // 4, w // 4, generator=g))
        s.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, k))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[0., 0., w, h]]))
        items.append(dict(inputs=img, data_samples=s))
    # stem 7x7 + 8 basic blocks x 2 (the deconv head has no Conv2d > 1x1)
    return model, 'mmpose', items, 1 + 16


def resnet_setup():
    import mmpretrain.models  # noqa: F401
    from mmpretrain.structures import DataSample
    cfg = shipped_config('mmpretrain', 'resnet/resnet18_8xb32_in1k.py')
    model = cfg.model.to_dict()
    model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model['backbone'].update(init_cfg=None, zero_init_residual=False)
    items = [dict(inputs=img, data_samples=DataSample().set_gt_label(label))
             for img, label in zip(_images(2, 64, 64), (3, 997))]
    return model, 'mmpretrain', items, 1 + 16


# (model, scope, items, number of KxK convs) of each library's model
SETUPS = [pytest.param(pspnet_setup, id='mmseg_pspnet', marks=pytest.mark.slow),
          pytest.param(simplebaseline_setup, id='mmpose_simplebaseline', marks=pytest.mark.slow),
          pytest.param(resnet_setup, id='mmpretrain_resnet')]


@pytest.mark.parametrize('device,precision', CASES)
@pytest.mark.parametrize('setup', SETUPS)
def test_training_step_gradient_is_g_times(setup, device, precision, tmp_path, on_device):
    on_device(device)
    model, scope, items, n = setup()
    runner, capture = train_one_step(tmp_path, model, scope, items, precision)
    check_gradients_are_g_times(runner, capture, device, precision, n)


@pytest.mark.slow
@pytest.mark.parametrize('device', DEVICES)
def test_refresh_through_hook_runs_the_data_preprocessor_on_device(device, tmp_path, on_device):
    """hook.refresh on raw (uint8, CPU) batches: the model sees normalised
    float inputs on ``device``, and G equals the torch-only engine's G from
    the data preprocessor's output computed by hand on that device."""
    on_device(device)
    model_cfg, scope, items, n = pspnet_setup()
    runner, _ = train_one_step(tmp_path, model_cfg, scope, items, 'fp32')
    hook, model = sgs_hook(runner), runner.model
    raw = pseudo_collate(items)
    assert raw['inputs'][0].dtype == torch.uint8 and raw['inputs'][0].device.type == 'cpu'
    seen = []
    handle = model.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        updated = hook.refresh(runner, step=7, batches=[raw])
    finally:
        handle.remove()
    assert len(updated) == n and hook.num_refreshes == 2 and hook.last_refresh == 7
    assert seen and all(x.device.type == device and x.dtype == torch.float32 for x in seen)
    assert tuple(seen[0].shape) == (2, 3, 64, 128)
    # mmseg's preprocessor: BGR->RGB, minus mean, over std (not 0..255 pixels)
    assert float(seen[0].abs().max()) < 5 and float(seen[0].min()) < 0

    data = model.data_preprocessor(raw, True)
    assert data['inputs'].device.type == device
    engine = SpatialGradScaler(model, options=hook.options)
    engine.refresh([data], lambda m, d: m(**d, mode='tensor'),
                   lambda m, d: m(**d, mode='loss'))
    by_hook, by_engine = hook.scales(), engine.scales()
    assert list(by_hook) == list(by_engine)
    for name in by_hook:
        assert not torch.equal(by_hook[name], torch.ones_like(by_hook[name])), name
        torch.testing.assert_close(by_engine[name], by_hook[name], rtol=0, atol=1e-12)
