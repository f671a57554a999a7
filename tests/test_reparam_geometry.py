"""to_branches on grouped, depthwise, strided, dilated, unpadded, reflect-
padded and non-square convs; what it leaves alone and names; how it finds the
norm after a conv; the bias fold in train and eval mode."""
import copy
import logging
import subprocess
import sys

import pytest
import torch
import torch.nn as nn

from reparam_utils import DEVICES, FORMS, FUSE_RTOL, blocks, max_rel_diff, no_tf32, perturb, \
    shapes  # noqa: F401  (no_tf32: the fixture)
from sgs_mm.reparam import BranchBlock, fuse_branches, fused_state_dict, init_branches, \
    lemma1_branches, to_branches

pytestmark = pytest.mark.usefixtures('no_tf32')


def _net(conv: nn.Conv2d, norm: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(4, conv.in_channels, 1), conv]
    if norm:
        layers.append(nn.BatchNorm2d(conv.out_channels))
    return nn.Sequential(*layers)


# (id, conv): every one is convertible by the masks-only kinds
CONVS = {
    'plain': lambda: nn.Conv2d(8, 8, 3, padding=1, bias=False),
    'grouped': lambda: nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False),
    'depthwise': lambda: nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
    'depthwise_x2': lambda: nn.Conv2d(8, 16, 3, padding=1, groups=8, bias=False),
    'strided': lambda: nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
    'strided_5x5': lambda: nn.Conv2d(8, 8, 5, stride=2, padding=2, bias=False),
    'dilated': lambda: nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False),
    'dilated_5x5_s2': lambda: nn.Conv2d(8, 8, 5, stride=2, padding=4, dilation=2, bias=False),
    'unpadded': lambda: nn.Conv2d(8, 8, 3, padding=0, bias=False),
    'overpadded': lambda: nn.Conv2d(8, 8, 3, padding=2, bias=False),
    'same_str': lambda: nn.Conv2d(8, 8, 5, padding='same', bias=False),
    'valid_str': lambda: nn.Conv2d(8, 8, 3, padding='valid', bias=False),
    'rect_3x5': lambda: nn.Conv2d(8, 8, (3, 5), padding=(1, 2), bias=False),
    'reflect': lambda: nn.Conv2d(8, 8, 3, padding=1, padding_mode='reflect', bias=False),
    'circular': lambda: nn.Conv2d(8, 8, 3, padding=1, padding_mode='circular', bias=False),
    'with_bias': lambda: nn.Conv2d(8, 8, 3, padding=1, bias=True),
}
# DBB is defined for K//2 zero padding, undilated, and (depthwise) in == out
DBB_LEFT_ALONE = {'dilated', 'dilated_5x5_s2', 'unpadded', 'overpadded', 'valid_str',
                  'reflect', 'circular'}


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('kind,linear', FORMS)
@pytest.mark.parametrize('case', sorted(CONVS))
def test_conv_cases(case, kind, linear, device):
    torch.manual_seed(0)
    net = _net(CONVS[case]()).to(device)
    before = shapes(net)
    x = torch.randn(3, 4, 13, 11, device=device)
    with torch.no_grad():
        plain_out = net(x)
    to_branches(net, kind, linear=linear)
    if kind == 'dbb' and case in DBB_LEFT_ALONE:
        assert not blocks(net) and list(net.reparam_skipped) == ['1']
        return
    assert isinstance(net[1], BranchBlock) and net.reparam_skipped == {}
    conv = CONVS[case]()
    for attr in ('in_channels', 'out_channels', 'kernel_size', 'stride', 'padding',
                 'dilation', 'groups'):
        assert getattr(net[1], attr) == getattr(conv, attr), attr
    with torch.no_grad():
        assert net(x).shape == plain_out.shape
    perturb(net)
    net.eval()
    with torch.no_grad():
        branched = net(x)
        fuse_branches(net)
        fused = net(x)
    assert type(net[1]) is nn.Conv2d and shapes(net) == before
    assert max_rel_diff(branched, fused) <= FUSE_RTOL


def test_branch_kernels_are_centred_in_the_window():
    """A dilated strided 5x5 conv: each ACB branch alone, fused, is its
    kernel placed in the middle row / column of the 5x5 window."""
    conv = nn.Conv2d(2, 2, 5, stride=2, padding=4, dilation=2, bias=False)
    net = to_branches(nn.Sequential(conv), 'acb', linear=True)
    block = net[0]
    x = torch.randn(1, 2, 17, 19)
    for name, rows, cols in (('hor', slice(2, 3), slice(None)), ('ver', slice(None), slice(2, 3))):
        side = block.branches[name].conv
        nn.init.normal_(side.weight)
        placed = torch.zeros(2, 2, 5, 5)
        placed[:, :, rows, cols] = side.weight.detach()
        expected = nn.functional.conv2d(x, placed, None, 2, 4, 2)
        torch.testing.assert_close(block.branches[name](x), expected, rtol=1e-5, atol=1e-5)


def test_lemma1_masks_match_the_engine():
    from sgs_mm.sgs import reparam_scaling
    for kind, expect in (('acb', [[1, 2, 1], [2, 3, 2], [1, 2, 1]]),
                         ('repvgg', [[1, 1, 1], [1, 2, 1], [1, 1, 1]])):
        g = reparam_scaling(lemma1_branches(kind), (3, 3), normalize=False)
        assert g.tolist() == expect


def test_left_alone_and_named(caplog):
    """Even kernels, 1x1 / 1xK convs (not SGS layers), frozen weights and a
    conv with its own padding forward are not converted; the ones SGS would
    scale are named in ``model.reparam_skipped`` and (all but the frozen
    one) in one warning."""
    from mmcv.cnn.bricks.conv2d_adaptive_padding import Conv2dAdaptivePadding
    frozen = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    frozen.weight.requires_grad_(False)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8),
                        nn.Conv2d(8, 8, 4, padding=1, bias=False), nn.BatchNorm2d(8),
                        nn.Conv2d(8, 8, 1, bias=False), nn.BatchNorm2d(8),
                        nn.Conv2d(8, 8, (1, 3), padding=(0, 1), bias=False), nn.BatchNorm2d(8),
                        frozen, nn.BatchNorm2d(8),
                        Conv2dAdaptivePadding(8, 8, 3, bias=False), nn.BatchNorm2d(8))
    with caplog.at_level(logging.INFO, logger='sgs_mm'):
        to_branches(net, 'acb')
    assert list(blocks(net)) == ['0']
    assert set(net.reparam_skipped) == {'2', '8', '10'}
    assert 'even kernel' in net.reparam_skipped['2']
    assert 'frozen' in net.reparam_skipped['8']
    assert 'own forward' in net.reparam_skipped['10']
    warnings = [r.getMessage() for r in caplog.records if 'left as they are' in r.getMessage()]
    assert len(warnings) == 1 and all(f'{n} (' in warnings[0] for n in ('2', '10'))
    assert '8 (' not in warnings[0]  # frozen: logged, not warned (as SGS does)


def test_dbb_on_the_pspnet_backbone_names_the_dilated_convs():
    """The PSPNet paper recipe's FullyDilatedResNet: ACB converts every 3x3
    conv (dilated ones included), DBB leaves layer3/layer4 (dilation 2/4)."""
    from sgs_mm.models.fully_dilated_resnet import FullyDilatedResNet
    kw = dict(depth=18, stem_channels=8, base_channels=8, dilations=(1, 1, 2, 4),
              strides=(1, 2, 1, 1), contract_dilation=False)
    acb = to_branches(FullyDilatedResNet(**kw), 'acb')
    assert len(blocks(acb)) == 17 and acb.reparam_skipped == {}
    dbb = to_branches(FullyDilatedResNet(**kw), 'dbb')
    assert len(blocks(dbb)) == 9
    assert sorted(dbb.reparam_skipped) == sorted(
        f'layer{s}.{b}.conv{c}' for s in (3, 4) for b in (0, 1) for c in (1, 2))


def test_conv_module_and_deep_stem_norms():
    """mmcv ConvModule (conv -> norm_name) and mmseg's deep stem (an
    nn.Sequential of conv, BN, ReLU) find their BN; an act-before-norm
    ConvModule has none."""
    from mmcv.cnn import ConvModule
    from mmseg.models.backbones import ResNetV1c
    net = nn.Sequential(ConvModule(3, 8, 3, padding=1, norm_cfg=dict(type='BN')),
                        ConvModule(8, 8, 3, padding=1, norm_cfg=dict(type='BN'),
                                   order=('conv', 'act', 'norm'), bias=False))
    with pytest.raises(ValueError, match=r"\['1.conv'\]"):
        to_branches(copy.deepcopy(net), 'dbb')
    to_branches(net, 'dbb', on_missing_norm='skip')
    assert blocks(net)['0.conv'].norm_name == '0.bn' and list(net.reparam_skipped) == ['1.conv']
    stem = ResNetV1c(depth=18, stem_channels=8, base_channels=8)
    to_branches(stem, 'repvgg')
    assert blocks(stem)['stem.0'].norm_name == 'stem.1'
    assert blocks(stem)['stem.3'].norm_name == 'stem.4'
    assert blocks(stem)['layer1.0.conv1'].norm_name == 'layer1.0.bn1'


def test_missing_norm_policies():
    """A bias-free conv with no BN after it: the published form raises by
    default, leaves it alone with 'skip', gives the fused conv a bias with
    'bias'; the explicit ``norms`` mapping finds a norm elsewhere; the
    Lemma 1 form never needs one (its branches have no bias)."""
    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU())

    with pytest.raises(ValueError, match='no BatchNorm'):
        to_branches(net(), 'acb')
    assert to_branches(net(), 'acb', on_missing_norm='skip').reparam_skipped == {
        '0': 'no BatchNorm after it to take the fused bias'}
    with_bias = fuse_branches(to_branches(net(), 'acb', on_missing_norm='bias'))
    assert with_bias[0].bias is not None
    assert fuse_branches(to_branches(net(), 'acb', linear=True))[0].bias is None
    with pytest.raises(ValueError, match='is not a module'):
        to_branches(net(), 'acb', norms={'0': 'bn'})
    with pytest.raises(ValueError, match='linear=True'):
        to_branches(net(), 'dbb', linear=True)
    with pytest.raises(ValueError, match='kind must be'):
        to_branches(net(), 'acnet')


def test_bias_fold_train_and_eval_mode():
    """After the fold, the fused conv + BN equal the branched block + BN in
    eval mode, and in train mode the BN output and the updated running mean
    are those of a bias-free conv (the bias never reaches the BN's output)."""
    torch.manual_seed(0)
    net = to_branches(nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(6)), 'repvgg')
    perturb(net)
    x = torch.randn(5, 4, 9, 9)
    net.eval()
    with torch.no_grad():
        branched = net(x)
    fuse_branches(net)
    with torch.no_grad():
        assert max_rel_diff(branched, net(x)) <= FUSE_RTOL
        conv, bn = net[0], net[1]
        reference = copy.deepcopy(bn).train()
        net.train()
        out = net(x)
        torch.testing.assert_close(out, reference(conv(x)))
        torch.testing.assert_close(bn.running_mean, reference.running_mean)


def test_fuse_under_a_prefix_and_on_a_submodule():
    """Converted as ``backbone``, fused inside a wrapper (``module.``
    prefix) or as the sub-module itself: the bias finds its BN either way."""
    from mmpretrain.models.backbones import ResNet
    x = torch.randn(2, 3, 32, 32)
    for how in ('wrapped', 'inner'):
        torch.manual_seed(0)
        outer = nn.Module()
        outer.backbone = ResNet(depth=18, stem_channels=8, base_channels=8, init_cfg=None)
        to_branches(outer, 'dbb')
        perturb(outer)
        outer.eval()
        with torch.no_grad():
            branched = outer.backbone(x)[-1]
        if how == 'wrapped':
            wrapper = nn.Module()
            wrapper.module = outer
            fuse_branches(wrapper)
        else:
            fuse_branches(outer.backbone)
        with torch.no_grad():
            assert max_rel_diff(branched, outer.backbone(x)[-1]) <= FUSE_RTOL


def test_init_weights_restores_the_kind_starting_values():
    """After mmengine's init_weights (mmpretrain's init_cfg draws every
    Conv2d, branch convs included), init_branches puts the Lemma 1 side
    branches back to zero and DBB's identity-based 1x1 conv to the identity."""
    from mmpretrain.models.backbones import ResNet
    for kind, linear in (('acb', True), ('dbb', False)):
        net = to_branches(ResNet(depth=18, stem_channels=8, base_channels=8), kind,
                          linear=linear)
        net.init_weights()
        block = net.layer1[0].conv1
        drawn = block.branches['hor' if linear else 'kxk'].conv.weight
        assert drawn.abs().sum() > 0
        init_branches(net)
        kxk = block.branches['kxk'].conv.weight
        assert kxk.abs().sum() > 0
        if linear:
            assert block.branches['hor'].conv.weight.abs().sum() == 0
        else:
            assert block.branches['1x1_kxk'].first.weight.abs().sum() == 0


def test_fused_state_dict_leaves_the_model_branched():
    torch.manual_seed(0)
    net = _net(CONVS['grouped']())
    before = shapes(net)
    to_branches(net, 'dbb')
    perturb(net)
    state = fused_state_dict(net)
    assert {k: tuple(v.shape) for k, v in state.items()} == before
    assert isinstance(net[1], BranchBlock)
    fuse_branches(net)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_torch_only():
    """sgs_mm.reparam imports and converts with no OpenMMLab package."""
    code = (
        "import sys\n"
        "for m in ('mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmpose', 'mmdet'):\n"
        "    sys.modules[m] = None\n"
        "import torch.nn as nn\n"
        "from sgs_mm.reparam import to_branches, fuse_branches\n"
        "net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))\n"
        "fuse_branches(to_branches(net, 'dbb'))\n"
        "mm = ('mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmpose', 'mmdet')\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in mm and sys.modules[m]]\n")
    subprocess.run([sys.executable, '-c', code], check=True)
