"""fuse_branches(to_branches(model)) == the branched model (eval mode) for
every block kind on real mmpretrain ResNets and the fixture photos, with the
original state_dict keys and shapes."""
import copy

import pytest
import torch

from reparam_utils import DEVICES, FORMS, FUSE_RTOL, blocks, fixture_batch, max_rel_diff, \
    no_tf32, perturb, shapes  # noqa: F401  (no_tf32: the fixture)
from sgs_mm.reparam import fuse_branches, to_branches

pytestmark = pytest.mark.usefixtures('no_tf32')


def _resnet(depth, width, device):
    from mmpretrain.models.backbones import ResNet
    net = ResNet(depth=depth, stem_channels=width, base_channels=width, out_indices=(3, ),
                 init_cfg=None)
    return net.to(device)


def _check(net, kind, linear, x):
    before = shapes(net)
    to_branches(net, kind, linear=linear)
    n_blocks = len(blocks(net))
    perturb(net)
    net.eval()
    with torch.no_grad():
        branched = net(x)[-1]
        fuse_branches(net)
        fused = net(x)[-1]
    assert not blocks(net)
    assert shapes(net) == before  # same keys and shapes, no extra bias
    return n_blocks, max_rel_diff(branched, fused)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('depth,n_kxk', [(18, 17), (50, 17)])
@pytest.mark.parametrize('kind,linear', FORMS)
def test_fused_equals_branched_resnet(shared_fixtures, device, depth, n_kxk, kind, linear):
    """ResNet-18 (BasicBlock) / ResNet-50 (Bottleneck), the 7x7 stem included,
    at 1/4 width (the same layers and convs, 16x less compute)."""
    torch.manual_seed(0)
    net = _resnet(depth, 16, device)
    n_blocks, diff = _check(net, kind, linear, fixture_batch(shared_fixtures, 64, device))
    assert n_blocks == n_kxk  # the stem and every 3x3 conv
    assert diff <= FUSE_RTOL, f'{kind} linear={linear}: fused differs by {diff:.2e}'


@pytest.mark.slow
@pytest.mark.parametrize('kind,linear', FORMS[:3])
def test_fused_equals_branched_full_resnet50(shared_fixtures, kind, linear):
    """The full-width ResNet-50 at 96x96 (wide layers: fan-in up to 4608)."""
    torch.manual_seed(0)
    device = DEVICES[-1]
    net = _resnet(50, 64, device)
    _, diff = _check(net, kind, linear, fixture_batch(shared_fixtures, 96, device))
    assert diff <= FUSE_RTOL


def test_stem_block_branches(shared_fixtures):
    """The 7x7 stem (stride 2, padding 3) as each kind: its side branches
    are 1x7/7x1 (ACB), 1x1 (RepVGG, no identity: 3 -> 64 channels, stride 2)
    and DBB's four branches; fused == branched on the stem's own output."""
    from mmpretrain.models.backbones import ResNet
    x = fixture_batch(shared_fixtures, 64)
    expected = {'acb': {'kxk', 'hor', 'ver'}, 'repvgg': {'kxk', '1x1'},
                'dbb': {'kxk', '1x1', '1x1_kxk', '1x1_avg'}}
    for kind, names in expected.items():
        net = ResNet(depth=18, init_cfg=None)
        to_branches(net, kind, include='conv1')
        perturb(net)
        stem = net.conv1
        assert set(stem.branches) == names
        if kind == 'acb':
            assert stem.branches['hor'].conv.kernel_size == (1, 7)
            assert stem.branches['hor'].conv.padding == (0, 3)
            assert stem.branches['ver'].conv.padding == (3, 0)
        net.eval()
        with torch.no_grad():
            branched = net.bn1(stem(x))
            fuse_branches(net)
            fused = net.bn1(net.conv1(x))
        assert type(net.conv1) is type(ResNet(depth=18).conv1)
        assert max_rel_diff(branched, fused) <= FUSE_RTOL


def test_repvgg_identity_only_where_shapes_allow():
    from mmpretrain.models.backbones import ResNet
    net = to_branches(ResNet(depth=18, init_cfg=None), 'repvgg')
    with_identity = {n for n, b in blocks(net).items() if 'identity' in b.branches}
    # in == out channels at stride 1: every 3x3 conv except each stage's
    # first conv1 in layer2-4 (stride 2 / channel change); not the stem
    assert 'conv1' not in with_identity
    assert 'layer1.0.conv1' in with_identity and 'layer2.0.conv2' in with_identity
    assert 'layer2.0.conv1' not in with_identity
    assert len(with_identity) == 17 - 1 - 3


def test_linear_form_starts_as_the_conv(shared_fixtures):
    """Lemma 1 form: side branches start at zero, so the branched model is the
    original model (train mode too) and fusing it changes nothing."""
    from mmpretrain.models.backbones import ResNet
    torch.manual_seed(0)
    x = fixture_batch(shared_fixtures, 64)
    plain = ResNet(depth=18, stem_channels=16, base_channels=16, init_cfg=None)
    net = to_branches(copy.deepcopy(plain), 'acb', linear=True)
    with torch.no_grad():
        assert torch.equal(plain(x)[-1], net(x)[-1])
    fuse_branches(net)
    for k, v in plain.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k
