"""SpatialGradScalingHook in a real mmengine Runner (toy model, CPU)."""
import copy
import functools
import os.path as osp

import pytest
import torch

import sgs_mm  # noqa: F401  registers the hook
from sgs_mm import SpatialGradScalingHook
from sgs_mm.compat.versions import load_weights_only
from toy_runner import build_runner, history, sgs_hook

HOOK = dict(type='SpatialGradScalingHook', k=5, interval=2, warmup=1, num_batches=2)


make_runner = functools.partial(build_runner, hook=HOOK)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize('kwargs,arg', [
    (dict(k=0), 'k'), (dict(k=-1), 'k'), (dict(interval=0), 'interval'),
    (dict(num_batches=0), 'num_batches'), (dict(warmup=-1), 'warmup'),
    (dict(method='mi'), 'method'), (dict(mode='adam'), 'mode'),
    (dict(interval=1.5), 'interval'), (dict(method='autocorr', diag_removal=True), 'diag_removal'),
    (dict(method='fixed'), 'alpha'), (dict(method='reparam'), 'branches'),
    (dict(method='reparam', branches=[(3, 'a')]), 'branches'),
    (dict(include=3), 'include'), (dict(by_epoch='yes'), 'by_epoch'),
    (dict(forward_mode='train'), 'forward_mode'),
])
def test_invalid_arguments_fail_at_build(kwargs, arg, tmp_path):
    with pytest.raises(ValueError, match=arg):
        SpatialGradScalingHook(**kwargs)
    # and through a config, when the Runner builds its hooks
    with pytest.raises(ValueError, match=arg):
        make_runner(tmp_path, hook=dict(type='SpatialGradScalingHook', **kwargs))


@pytest.mark.parametrize('kwargs,message', [
    (dict(include='backbone.*'), "include pattern 'backbone.*' matches no Conv2d"),
    (dict(exclude=['conv1', 'nope*']), "exclude pattern 'nope\\*' matches no Conv2d"),
    (dict(include='proj'), 'no eligible conv'),
    (dict(method='reparam', branches=[(5, 5)]), "layer 'conv1'.*does not fit"),
])
def test_bad_layer_selection_fails_at_run_start(kwargs, message, tmp_path):
    runner = make_runner(tmp_path, hook=dict(type='SpatialGradScalingHook', **kwargs))
    with pytest.raises(ValueError, match=message):
        runner.train()


# ------------------------------------------------------------------ schedules
def test_epoch_schedule_history_and_layers(tmp_path):
    runner = make_runner(tmp_path, max_epochs=5)
    infos = []
    info = runner.logger.info
    runner.logger.info = lambda msg, *a, **k: (infos.append(msg), info(msg, *a, **k))
    runner.train()
    refresh_lines = [m for m in infos if m.startswith('SGS refresh #')]
    assert len(refresh_lines) == 3
    assert all(all(f'{n}: c=' in m for n in ('conv1', 'conv2', 'conv3')) for m in refresh_lines)
    # the heatmap grid went to the visualizer's backend (LocalVisBackend: PNG per refresh)
    images = sorted(tmp_path.glob('*/vis_data/vis_image/sgs_G_*.png'))
    assert len(images) == 3
    hook = sgs_hook(runner)
    assert list(hook.layers) == ['conv1', 'conv2', 'conv3']  # 1x1 proj left alone
    records = history(tmp_path)['records']
    assert [r['epoch'] for r in records] == [1, 2, 4]
    assert hook.num_refreshes == 3
    for name, g in hook.scales().items():
        assert g.mean().item() == pytest.approx(1.0)
        assert not torch.allclose(g, torch.ones_like(g)), name
        assert records[-1]['layers'][name] == g.float().tolist() or torch.allclose(
            torch.tensor(records[-1]['layers'][name], dtype=torch.float64), g)
    assert g.shape == (5, 5)  # conv3 is 5x5, grouped and strided


def test_iter_schedule_and_warmup_zero(tmp_path):
    hook = dict(type='SpatialGradScalingHook', warmup=0, interval=5, num_batches=1,
                unit='iter')  # iterations only when asked (epochs by default)
    runner = make_runner(tmp_path, hook=hook, by_epoch=False, max_iters=12)
    runner.train()
    assert sgs_hook(runner).by_epoch is False
    assert [r['iter'] for r in history(tmp_path)['records']] == [0, 5, 10]


def test_warmup_zero_refreshes_before_first_step(tmp_path):
    hook = dict(type='SpatialGradScalingHook', warmup=0, interval=100)
    runner = make_runner(tmp_path, hook=hook, max_epochs=1)
    runner.train()
    records = history(tmp_path)['records']
    assert [(r['epoch'], r['iter']) for r in records] == [(0, 0)]


def test_refresh_restores_modes_and_leaves_bn_statistics(tmp_path):
    runner = make_runner(tmp_path, max_epochs=2)
    runner.train()
    hook, model = sgs_hook(runner), runner.model
    model.train()
    model.bn1.eval()  # a module deliberately frozen in eval (like norm_eval=True)
    bn = copy.deepcopy(model.bn1.state_dict())
    before = hook.scales()
    hook.refresh(runner, step=99)
    assert model.training and not model.bn1.training and model.conv1.training
    for k, v in model.bn1.state_dict().items():
        assert torch.equal(v, bn[k]), k
    assert hook.num_refreshes == 2 and hook.last_refresh == 99
    assert any(not torch.equal(before[n], g) for n, g in hook.scales().items())


# ------------------------------------------------------- gradients really scaled
def grads_at_step(runner, hook, batches, attached):
    """Weight gradients seen by optimizer.step() after len(batches) train_steps."""
    model, wrapper = runner.model, runner.optim_wrapper
    captured = {}

    def capture(optimizer, args, kwargs):
        captured.update({n: w.grad.detach().clone() for n, w in hook.applier.weights.items()})

    handle = wrapper.optimizer.register_step_pre_hook(capture)
    try:
        if attached:
            hook.applier.attach([wrapper.optimizer])
        else:
            hook.applier.detach()
        wrapper.initialize_count_status(model, 0, 1000)
        for batch in batches:
            model.train_step(batch, wrapper)
    finally:
        handle.remove()
        hook.applier.detach()
    return captured


CUDA = pytest.mark.skipif(not torch.cuda.is_available(),
                          reason='needs a CUDA GPU (fp16 autocast + dynamic loss scaling)')


@pytest.mark.parametrize('variant', ['sgd', 'accumulate2', 'amp_bf16',
                                     pytest.param('amp_fp16', marks=CUDA)])
def test_gradient_is_scaled_by_g(variant, tmp_path, monkeypatch):
    optim = dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
    if variant == 'accumulate2':
        optim['accumulative_counts'] = 2
    if variant == 'amp_fp16':
        # the real fp16 path: autocast fp16, dynamic loss scale, unscale before step
        optim.update(type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic')
    if variant == 'amp_bf16':
        if not torch.cuda.is_available():
            # mmengine's AmpOptimWrapper asserts a GPU at construction; bf16
            # autocast itself runs on CPU. Only that device check is lifted here.
            import mmengine.optim.optimizer.amp_optimizer_wrapper as amp
            monkeypatch.setattr(amp, 'is_cuda_available', lambda: True)
        optim.update(type='AmpOptimWrapper', dtype='bfloat16')
    runner = make_runner(tmp_path, max_epochs=2, optim_wrapper=optim)
    runner.train()
    hook = sgs_hook(runner)
    assert hook.num_refreshes == 1  # epoch 1
    loader = iter(runner.train_dataloader)
    steps = 2 if variant == 'accumulate2' else 1
    batches = [next(loader) for _ in range(steps)]
    state = copy.deepcopy(runner.model.state_dict())
    opt_state = copy.deepcopy(runner.optim_wrapper.optimizer.state_dict())
    with_g = grads_at_step(runner, hook, batches, attached=True)
    runner.model.load_state_dict(state)
    runner.optim_wrapper.optimizer.load_state_dict(opt_state)
    without = grads_at_step(runner, hook, batches, attached=False)
    assert set(with_g) == {'conv1', 'conv2', 'conv3'}
    for name, g in hook.scales().items():
        expected = without[name] * g.to(without[name])
        # equal up to float32 rounding of the (scaled) accumulation order
        # (fp16: up to half-precision rounding of the backward)
        tol = 2e-3 if variant == 'amp_fp16' else 1e-5
        atol = tol / 10 * float(expected.abs().max())
        torch.testing.assert_close(with_g[name], expected, rtol=tol, atol=atol)
        assert not torch.allclose(with_g[name], without[name])


@CUDA
def test_fp16_overflow_step_is_skipped_then_g_applies(tmp_path):
    """fp16 + dynamic loss scale: an overflowing step is skipped (weights kept,
    scale lowered); the next finite step sees G times the unscaled gradient."""
    optim = dict(type='AmpOptimWrapper', dtype='float16',
                 loss_scale=dict(init_scale=2.0 ** 60, growth_interval=1000),
                 optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
    runner = make_runner(tmp_path, max_epochs=2, optim_wrapper=optim)
    runner.train()
    hook, model, wrapper = sgs_hook(runner), runner.model, runner.optim_wrapper
    assert hook.num_refreshes == 1
    wrapper.loss_scaler.update(2.0 ** 60)  # next backward overflows in fp16
    steps = []
    handle = wrapper.optimizer.register_step_pre_hook(
        lambda opt, a, k: steps.append({n: w.grad.detach().clone()
                                        for n, w in hook.applier.weights.items()}))
    hook.scaler.attach([wrapper.optimizer])
    batch = next(iter(runner.train_dataloader))
    before = copy.deepcopy(model.state_dict())
    try:
        wrapper.initialize_count_status(model, 0, 1000)
        model.train_step(batch, wrapper)
        assert steps == []  # skipped: inf/NaN gradients
        assert wrapper.loss_scaler.get_scale() < 2.0 ** 60
        assert torch.equal(model.conv1.weight, before['conv1.weight'])
        for _ in range(80):  # the scale halves per overflow until finite
            model.train_step(batch, wrapper)
            if steps:
                break
    finally:
        handle.remove()
    assert steps, 'no finite fp16 step'
    # the same step's unscaled gradient, without G, from the same weights
    with_g = steps[-1]
    hook.scaler.detach()
    model.load_state_dict(before)
    plain = {}
    for name, w in hook.applier.weights.items():
        w.grad = None
    scale = wrapper.loss_scaler.get_scale()
    with wrapper.optim_context(model):
        data = model.data_preprocessor(batch, True)
        loss = model(**data, mode='loss')['loss']
    (loss.float() * scale).backward()
    for name, w in hook.applier.weights.items():
        plain[name] = w.grad.detach() / scale
    for name, g in hook.scales().items():
        expected = plain[name] * g.to(plain[name])
        torch.testing.assert_close(with_g[name], expected, rtol=2e-3,
                                   atol=2e-3 * float(expected.abs().max()))


def test_update_mode_in_runner(tmp_path):
    hook = dict(type='SpatialGradScalingHook', method='fixed', alpha=2.0, beta=4.0, mode='update')
    runner = make_runner(tmp_path, hook=hook, max_epochs=1)
    runner.train()
    h = sgs_hook(runner)
    assert torch.allclose(h.scales()['conv1'], sgs_mm.sgs.fixed_scaling(2.0, 4.0))
    assert torch.equal(h.scales()['conv3'], torch.ones(5, 5, dtype=torch.float64))  # 5x5: kept 1
    model, wrapper = runner.model, runner.optim_wrapper
    h.applier.attach([wrapper.optimizer])
    old = model.conv1.weight.detach().clone()
    ref = copy.deepcopy(model)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    ref_opt.load_state_dict(copy.deepcopy(wrapper.optimizer.state_dict()))
    batch = next(iter(runner.train_dataloader))
    wrapper.initialize_count_status(model, 0, 1000)
    model.train_step(batch, wrapper)
    ref.train_step(batch, wrapper.__class__(optimizer=ref_opt))
    expected = old + h.scales()['conv1'].to(old) * (ref.conv1.weight.detach() - old)
    torch.testing.assert_close(model.conv1.weight.detach(), expected, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ resume
def test_resume_gives_identical_g_and_weights(tmp_path):
    straight = make_runner(tmp_path / 'straight', max_epochs=4)
    straight.train()
    first = make_runner(tmp_path / 'split', max_epochs=2)
    first.train()
    ckpt = load_weights_only(osp.join(tmp_path / 'split', 'epoch_2.pth'))
    assert set(ckpt['sgs']['scales']) == {'conv1', 'conv2', 'conv3'}
    resumed = make_runner(tmp_path / 'split', max_epochs=4, resume=True,
                          load_from=str(tmp_path / 'split' / 'epoch_2.pth'))
    resumed.train()
    a, b = sgs_hook(straight), sgs_hook(resumed)
    assert a.num_refreshes == b.num_refreshes == 2  # epochs 1 and 2
    for name in a.layers:
        assert torch.equal(a.scales()[name], b.scales()[name]), name
    for (n, p), (_, q) in zip(straight.model.state_dict().items(),
                              resumed.model.state_dict().items()):
        assert torch.equal(p, q), n
    # the resumed run appends to the same history file, without duplicates
    for run in ('split', 'straight'):
        assert [r['epoch'] for r in history(tmp_path / run)['records']] == [1, 2]


def test_load_from_without_resume_does_not_carry_g(tmp_path):
    first = make_runner(tmp_path / 'a', max_epochs=2)
    first.train()
    hook = dict(type='SpatialGradScalingHook', warmup=50)
    second = make_runner(tmp_path / 'b', hook=hook, max_epochs=1,
                         load_from=str(tmp_path / 'a' / 'epoch_2.pth'))
    second.train()
    for g in sgs_hook(second).scales().values():
        assert torch.equal(g, torch.ones_like(g))


def test_conv_that_never_runs_keeps_g_and_is_reported(tmp_path):
    from mmengine.registry import MODELS
    from toy_runner import SGSToyNet

    @MODELS.register_module(force=True)
    class SGSToyNetWithSpare(SGSToyNet):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.spare = torch.nn.Conv2d(8, 8, 3, padding=1)  # never called

    hook = dict(type='SpatialGradScalingHook', warmup=0, interval=1)
    runner = make_runner(tmp_path, hook=hook, max_epochs=2, model=dict(type='SGSToyNetWithSpare'))
    warned = []
    warning = runner.logger.warning
    runner.logger.warning = lambda msg, *a, **k: (warned.append(msg), warning(msg, *a, **k))
    runner.train()
    h = sgs_hook(runner)
    assert h.num_refreshes == 2
    assert torch.equal(h.scales()['spare'], torch.ones(3, 3, dtype=torch.float64))
    assert not torch.equal(h.scales()['conv1'], torch.ones(3, 3, dtype=torch.float64))
    assert h._reported_idle == {'spare'}
    assert sum('did not run during the refresh' in m for m in warned) == 1
