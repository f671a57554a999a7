"""One real training step of each model family the project targets, built from
the configs the OpenMMLab packages ship (nothing is downloaded)."""
import math

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData, PixelData

from mm_configs import no_syncbn as _no_syncbn
from mm_configs import shipped_config as _shipped_config


def _train_one_step(model, data):
    """Run ``model.train_step`` once; return (loss, max |weight change|)."""
    torch.manual_seed(0)
    model.train()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    log_vars = model.train_step(data, optim)
    loss = float(torch.as_tensor(log_vars['loss']).detach())
    change = max((p.detach() - before[k]).abs().max().item()
                 for k, p in model.named_parameters())
    return loss, change


def _images(n, h, w):
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
            for _ in range(n)]


def test_pspnet_r18_d8_train_step():
    import mmseg.models  # noqa: F401
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample

    cfg = _shipped_config(
        'mmseg', 'pspnet/pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py')
    model_cfg = _no_syncbn(cfg.model.to_dict())
    model_cfg['pretrained'] = None
    model_cfg['backbone']['init_cfg'] = None
    h, w = 64, 128
    model_cfg['data_preprocessor']['size'] = (h, w)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    assert model.backbone.depth == 18
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())

    g = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(2):
        s = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        s.gt_sem_seg = PixelData(
            data=torch.randint(0, 19, (1, h, w), generator=g))
        samples.append(s)
    loss, change = _train_one_step(
        model, dict(inputs=_images(2, h, w), data_samples=samples))
    assert math.isfinite(loss) and loss > 0
    assert change > 0


def test_simplebaseline_r18_mpii_train_step():
    import mmpose.models  # noqa: F401
    from mmpose.registry import MODELS
    from mmpose.structures import PoseDataSample

    cfg = _shipped_config(
        'mmpose', 'body_2d_keypoint/topdown_heatmap/mpii/'
        'td-hm_res50_8xb64-210e_mpii-256x256.py')
    model_cfg = cfg.model.to_dict()
    model_cfg['backbone']['depth'] = 18
    model_cfg['backbone']['init_cfg'] = None
    model_cfg['head']['in_channels'] = 512  # ResNet-18's last stage
    with DefaultScope.overwrite_default_scope('mmpose'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    k = model_cfg['head']['out_channels']
    assert k == 16

    h = w = 128  # heatmaps at 1/4 resolution, as the codec (256 -> 64)
    g = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(2):
        s = PoseDataSample(metainfo=dict(
            img_shape=(h, w), input_size=(w, h), input_center=(w / 2, h / 2),
            input_scale=(w, h), flip_indices=list(range(k))))
        s.gt_fields = PixelData(
            heatmaps=torch.rand(k, h // 4, w // 4, generator=g))
        s.gt_instance_labels = InstanceData(keypoint_weights=torch.ones(1, k))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[0., 0., w, h]]))
        samples.append(s)
    loss, change = _train_one_step(
        model, dict(inputs=_images(2, h, w), data_samples=samples))
    assert math.isfinite(loss) and loss > 0
    assert change > 0


def test_mmpretrain_resnet18_train_step():
    import mmpretrain.models  # noqa: F401
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    cfg = _shipped_config('mmpretrain', 'resnet/resnet18_8xb32_in1k.py')
    model_cfg = cfg.model.to_dict()
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model_cfg['backbone']['init_cfg'] = None
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    assert model.backbone.depth == 18

    samples = [DataSample().set_gt_label(label) for label in (3, 997)]
    loss, change = _train_one_step(
        model, dict(inputs=_images(2, 64, 64), data_samples=samples))
    assert math.isfinite(loss) and loss > 0
    assert change > 0
