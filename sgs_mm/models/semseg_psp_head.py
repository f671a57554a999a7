"""PSPNet's head as SemSeg builds it: PPM branches of their own width."""
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.psp_head import PPM, PSPHead
from mmseg.registry import MODELS

from .torch_default_init import TorchDefaultInitMixin, reset_to_torch_defaults


@MODELS.register_module()
class SemSegPSPHead(TorchDefaultInitMixin, PSPHead):
    """mmseg's ``PSPHead`` with the pyramid branches' width set apart and
    PyTorch's default initialisation.

    SemSeg (hszhao/semseg ``model/pspnet.py``) gives each PPM branch
    ``fea_dim / len(bins)`` channels and its 3x3 ``cls`` conv ``512``
    outputs; mmseg's ``PSPHead`` uses ``channels`` for both. For ResNet-50
    (``fea_dim`` 2048) the two agree at 512; for the 512-channel ResNet-18/34
    SemSeg's rule gives 128-wide branches, which this head builds.

    SemSeg builds ``ppm`` and ``cls`` from plain ``nn.Conv2d`` /
    ``nn.BatchNorm2d`` and initialises none of them: every conv and norm here
    keeps PyTorch's default init (``TorchDefaultInitMixin``), where mmseg
    initialises ``ConvModule`` convs Kaiming-normal and ``conv_seg``
    Normal(0, 0.01).

    Args:
        ppm_channels (int, optional): width of each pyramid branch; ``None``
            is ``in_channels // len(pool_scales)`` (SemSeg's rule).
        pool_scales, **kwargs: as in ``PSPHead`` (``channels`` is the 3x3
            conv's width).
    """

    def __init__(self, pool_scales=(1, 2, 3, 6), ppm_channels=None, **kwargs):
        super().__init__(pool_scales=pool_scales, **kwargs)
        if ppm_channels is None:
            ppm_channels = self.in_channels // len(pool_scales)
        self.ppm_channels = ppm_channels
        self.psp_modules = PPM(self.pool_scales, self.in_channels, ppm_channels,
                               conv_cfg=self.conv_cfg, norm_cfg=self.norm_cfg,
                               act_cfg=self.act_cfg, align_corners=self.align_corners)
        self.bottleneck = ConvModule(self.in_channels + len(pool_scales) * ppm_channels,
                                     self.channels, 3, padding=1, conv_cfg=self.conv_cfg,
                                     norm_cfg=self.norm_cfg, act_cfg=self.act_cfg)
        reset_to_torch_defaults(self)  # the PPM/bottleneck rebuilt above
