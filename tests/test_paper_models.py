"""The model pieces of the PSPNet paper recipe (sgs_mm.models), each against
the formula of the code the paper names (hszhao/semseg), written here from
its description:

- FullyDilatedResNet: a D8 BasicBlock computes
  relu(bn2(conv_d(relu(bn1(conv_d(x))))) + x) with both 3x3 convs dilated d;
- SemSegPSPHead / TorchDefaultInitFCNHead: every conv/BN keeps PyTorch's
  default init (SemSeg builds plain nn.Conv2d/BatchNorm2d and initialises none);
- SoftmaxSlideEncoderDecoder: SemSeg's scale_process/net_process (centred
  mean padding, ceil((H - crop) / stride) + 1 windows, softmax per window
  averaged with its flip, probabilities averaged over overlaps).

Tiny real mmseg models on CPU (or CUDA when present); no data."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def _build(cfg):
    import sgs_mm.models  # noqa: F401  registers the classes
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):  # as from a config
        return MODELS.build(ConfigDict(cfg))


def _tiny_resnet(type_, depth=18, **kw):
    return dict(type=type_, depth=depth, stem_channels=8, base_channels=8,
                dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1),
                contract_dilation=False, **kw)


# ------------------------------------------------------- FullyDilatedResNet
@pytest.mark.parametrize('depth', [18, 34])
def test_fully_dilated_resnet_dilates_every_3x3_conv(depth):
    net = _build(_tiny_resnet('FullyDilatedResNet', depth))
    for name, d in (('layer3', 2), ('layer4', 4)):
        for block in getattr(net, name):
            for conv in (block.conv1, block.conv2):
                assert conv.dilation == (d, d) and conv.padding == (d, d)
                assert conv.stride == (1, 1)
    for name in ('layer1', 'layer2'):
        for block in getattr(net, name):
            assert block.conv2.dilation == (1, 1)
    # mmseg's own ResNet leaves conv2 undilated (what this class fixes)
    plain = _build(_tiny_resnet('ResNet', depth))
    assert plain.layer3[0].conv2.dilation == (1, 1)
    assert set(plain.state_dict()) == set(net.state_dict())  # same keys


def test_fully_dilated_basic_block_matches_the_d8_formula():
    """Each block of layer3 = relu(bn2(conv2_d2(relu(bn1(conv1_d2(x))))) + x),
    with F.conv2d(dilation=2, padding=2) written out; output stride 8."""
    torch.manual_seed(0)
    net = _build(_tiny_resnet('FullyDilatedResNet'))
    net.eval()  # mmseg's ResNet.train() returns None
    block = net.layer3[1]
    x = torch.randn(1, block.conv1.in_channels, 9, 11)

    def conv(c, t):
        return F.conv2d(t, c.weight, None, stride=1, padding=2, dilation=2)
    with torch.no_grad():
        y = F.relu(block.norm1(conv(block.conv1, x)))
        want = F.relu(block.norm2(conv(block.conv2, y)) + x)
        assert torch.allclose(block(x), want, atol=1e-6)
        outs = net(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape[2:]) for o in outs] == [(16, 16), (8, 8), (8, 8),
                                                  (8, 8)]


def test_fully_dilated_resnet_50_is_mmseg_resnet():
    """Bottleneck blocks have one 3x3 conv, already dilated by mmseg."""
    torch.manual_seed(0)
    a = _build(_tiny_resnet('FullyDilatedResNet', 50))
    b = _build(_tiny_resnet('ResNet', 50))
    a.eval(), b.eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(p, q) for p, q in zip(a(x), b(x)))
    assert a.layer4[0].conv2.dilation == (4, 4)


# ---------------------------------------------------- PyTorch default init
def _uniform_bound(layer):
    fan_in = layer.weight[0].numel()  # in_channels/groups x kernel area
    return 1 / math.sqrt(fan_in)  # kaiming_uniform(a=sqrt(5)) bound


def _is_torch_default(layer):
    """PyTorch's default: weights and biases uniform in +-1/sqrt(fan_in);
    a sample of a few hundred has about that std (b / sqrt(3))."""
    b = _uniform_bound(layer)
    w = layer.weight.detach().flatten()
    ok = w.abs().max() <= b + 1e-7
    if w.numel() >= 500:
        ok = ok and abs(w.std().item() / (b / math.sqrt(3)) - 1) < 0.15
    if layer.bias is not None:
        ok = ok and layer.bias.detach().abs().max() <= b + 1e-7
    return bool(ok)


def _heads():
    bn = dict(type='BN', requires_grad=True)
    psp = dict(type='SemSegPSPHead', in_channels=64, channels=32,
               pool_scales=(1, 2, 3, 6), num_classes=19, norm_cfg=bn,
               align_corners=True)
    aux = dict(type='TorchDefaultInitFCNHead', in_channels=32, in_index=2,
               channels=16, num_convs=1, concat_input=False, num_classes=19,
               norm_cfg=bn, align_corners=True)
    return psp, aux


@pytest.mark.parametrize('which', [0, 1], ids=['SemSegPSPHead',
                                              'TorchDefaultInitFCNHead'])
def test_heads_keep_pytorch_default_init(which):
    """After construction and after init_weights (what the Runner calls):
    no Normal(0, 0.01) conv_seg, no Kaiming-normal ConvModule, BN 1/0."""
    torch.manual_seed(0)
    head = _build(_heads()[which])
    for _ in range(2):
        convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(_is_torch_default(c) for c in convs)
        assert head.conv_seg.bias.abs().sum() > 0  # mmseg: bias 0
        for m in head.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        head.init_weights()
    # the same layer in mmseg's own head is not (Normal(0, 0.01) conv_seg)
    cfg = dict(_heads()[1], type='FCNHead')
    plain = _build(cfg)
    plain.init_weights()
    assert not _is_torch_default(plain.conv_seg) or \
        plain.conv_seg.bias.abs().sum() == 0


# ------------------------------------------------ SoftmaxSlideEncoderDecoder
def _segmentor(window_flip, crop=(33, 33), stride=(22, 22)):
    bn = dict(type='BN', requires_grad=True)
    return dict(
        type='SoftmaxSlideEncoderDecoder',
        data_preprocessor=dict(type='SegDataPreProcessor'),
        backbone=_tiny_resnet('FullyDilatedResNet', norm_cfg=bn),
        decode_head=dict(type='FCNHead', in_channels=64, in_index=3,
                         channels=8, num_convs=1, num_classes=5, norm_cfg=bn,
                         align_corners=True),
        test_cfg=dict(mode='slide', crop_size=crop, stride=stride,
                      window_flip=window_flip))


def _semseg_scale_process(net, image, crop, stride, flip):
    """SemSeg tool/test.py scale_process + net_process, from their
    description, on a normalised CHW image (the mean pads as 0)."""
    _, h, w = image.shape
    ch, cw = crop
    pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
    ph, pw = int(pad_h / 2), int(pad_w / 2)
    img = np.zeros((image.shape[0], h + pad_h, w + pad_w), np.float64)
    img[:, ph:ph + h, pw:pw + w] = image
    nh, nw = img.shape[1:]
    grid_h = int(np.ceil(float(nh - ch) / stride[0]) + 1)
    grid_w = int(np.ceil(float(nw - cw) / stride[1]) + 1)
    pred, count = None, np.zeros((nh, nw))
    for ih in range(grid_h):
        for iw in range(grid_w):
            e_h = min(ih * stride[0] + ch, nh)
            e_w = min(iw * stride[1] + cw, nw)
            s_h, s_w = e_h - ch, e_w - cw
            win = img[:, s_h:e_h, s_w:e_w]
            out = net(win).astype(np.float64)  # C x ch x cw scores
            prob = np.exp(out - out.max(0)) / np.exp(out - out.max(0)).sum(0)
            if flip:
                out_f = net(win[:, :, ::-1].copy())
                prob_f = np.exp(out_f - out_f.max(0))
                prob_f /= prob_f.sum(0)
                prob = (prob + prob_f[:, :, ::-1]) / 2
            if pred is None:
                pred = np.zeros((prob.shape[0], nh, nw))
            pred[:, s_h:e_h, s_w:e_w] += prob
            count[s_h:e_h, s_w:e_w] += 1
    pred /= count
    return pred[:, ph:ph + h, pw:pw + w]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('window_flip', [True, False])
@pytest.mark.parametrize('hw', [(50, 70), (20, 25), (33, 80)],
                         ids=['overlapping', 'padded', 'one-row'])
def test_softmax_slide_matches_semseg_scale_process(device, window_flip, hw):
    from mmseg.structures import SegDataSample
    torch.manual_seed(0)
    model = _build(_segmentor(window_flip)).to(device).eval()
    x = torch.randn(1, 3, *hw, device=device)

    def net(window):  # the network on one window: scores at window size
        t = torch.as_tensor(np.ascontiguousarray(window), dtype=torch.float32,
                            device=device)[None]
        with torch.no_grad():
            out = model.encode_decode(t, [dict(img_shape=t.shape[2:])])
        return out[0].cpu().numpy()

    want = _semseg_scale_process(net, x[0].cpu().numpy(), (33, 33), (22, 22),
                                 window_flip)
    sample = SegDataSample(metainfo=dict(ori_shape=hw, img_shape=hw,
                                         pad_shape=hw))
    with torch.no_grad():
        res = model.predict(x, [sample])[0]
    got = res.seg_logits.data
    assert got.device.type == device
    assert np.allclose(got.cpu().numpy(), want, atol=1e-5)
    assert torch.allclose(got.sum(0), torch.ones(hw, device=device),
                          atol=1e-5)  # probabilities
    assert torch.equal(res.pred_sem_seg.data[0], got.argmax(0))


def test_softmax_slide_differs_from_mmseg_raw_score_average():
    """Where windows overlap, averaging probabilities is not averaging raw
    scores (mmseg's EncoderDecoder.slide_inference)."""
    from mmseg.models.segmentors import EncoderDecoder
    torch.manual_seed(0)
    model = _build(_segmentor(False)).eval()
    with torch.no_grad():  # confident scores: softmax far from linear
        model.decode_head.conv_seg.weight.mul_(100)
    x = torch.randn(1, 3, 50, 70)
    metas = [dict(ori_shape=(50, 70), img_shape=(50, 70))]
    with torch.no_grad():
        probs = model.slide_inference(x, [dict(metas[0])])
        raw = EncoderDecoder.slide_inference(model, x, [dict(metas[0])])
    assert (probs - raw.softmax(1)).abs().max() > 1e-2
