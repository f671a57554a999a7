# PSPNet-R34-D8 on Cityscapes 512x1024, OpenMMLab's standard mmseg recipe
# (80k iterations, 4 GPUs x 2, see the R18 config): the R18 config with a
# 34-layer backbone (BasicBlock, so the same 512-channel C5 and 128/64-channel
# heads). NOT the SGS paper's recipe: that is
# ./pspnet_r34-d8_8xb2-paper200e_cityscapes-713x713.py. mmseg ships no R34
# config. Backbone, SyncBN and data notes: see the R18 config. Other
# checkpoint: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py']
model = dict(
    backbone=dict(
        depth=34,
        init_cfg=dict(
            checkpoint='work_dirs/resnet34_8xb32-paper120e_in1k/epoch_120.pth'
        )))
