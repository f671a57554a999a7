"""A fused checkpoint is a plain ResNet checkpoint: a branched mmpretrain
classifier, fused, saves exactly the keys and shapes of the plain one and
loads with strict=True into a fresh mmpretrain ResNet and, through the
downstream stages' StrictPretrained loader, into the PSPNet paper recipe's
FullyDilatedResNet (mmseg) and the SimpleBaseline ResNet (mmpose)."""
import pytest
import torch

from reparam_utils import FORMS, fixture_batch, perturb, shapes
from sgs_mm.reparam import fuse_branches, to_branches


def _classifier(depth):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    channels = 512 if depth < 50 else 2048
    # in mmpretrain's scope: an earlier test may leave mmseg's or mmpose's as the default
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=depth, zero_init_residual=False, init_cfg=None),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=4, in_channels=channels,
                      loss=dict(type='CrossEntropyLoss'), init_cfg=None)))


def _fused_checkpoint(tmp_path, depth, kind, linear):
    torch.manual_seed(0)
    model = _classifier(depth)
    plain_shapes = shapes(model)
    to_branches(model, kind, linear=linear)
    perturb(model)
    fuse_branches(model)
    assert shapes(model) == plain_shapes
    path = tmp_path / f'{kind}.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model, path


def _downstream_backbones(depth):
    from mmpose.models.backbones import ResNet as PoseResNet
    from mmpretrain.models.backbones import ResNet as ClsResNet
    from sgs_mm.models.fully_dilated_resnet import FullyDilatedResNet
    return {
        # configs/pretrain: the next pretrain run / evaluation
        'mmpretrain ResNet': ClsResNet(depth=depth, init_cfg=None),
        # configs/pspnet/*paper200e*: the D8 backbone of PSPNet
        'PSPNet FullyDilatedResNet': FullyDilatedResNet(
            depth=depth, dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1),
            contract_dilation=False, norm_cfg=dict(type='BN', requires_grad=True)),
        # configs/simplebaseline: mmpose's ResNet
        'SimpleBaseline ResNet': PoseResNet(depth=depth, zero_init_residual=False),
    }


# the keys do not depend on the kind: DBB (the most branches) in the fast
# suite, the other forms among the slow tests
@pytest.mark.parametrize('kind,linear', [
    pytest.param(k, lin, marks=() if k == 'dbb' else pytest.mark.slow) for k, lin in FORMS])
def test_fused_checkpoint_loads_strictly_downstream(tmp_path, shared_fixtures, kind, linear):
    from sgs_mm.checkpoint.backbone_state import load_backbone_strict
    model, path = _fused_checkpoint(tmp_path, 18, kind, linear)
    fused = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
             if k.startswith('backbone.')}
    x = fixture_batch(shared_fixtures, 32)
    model.eval()
    with torch.no_grad():
        expected = model.backbone(x)[-1]
    for name, backbone in _downstream_backbones(18).items():
        info = load_backbone_strict(backbone, str(path), 'backbone.')  # raises on any mismatch
        assert info['loaded'] == len(fused), name
        for k, v in backbone.state_dict().items():
            assert torch.equal(v, fused[k]), (name, k)
        if name != 'PSPNet FullyDilatedResNet':  # same architecture: same function
            backbone.eval()
            with torch.no_grad():
                torch.testing.assert_close(backbone(x)[-1], expected)


@pytest.mark.slow
def test_fused_resnet50_checkpoint_loads_strictly(tmp_path):
    from sgs_mm.checkpoint.backbone_state import load_backbone_strict
    _, path = _fused_checkpoint(tmp_path, 50, 'dbb', False)
    for backbone in _downstream_backbones(50).values():
        load_backbone_strict(backbone, str(path), 'backbone.')
