# PSPNet-R34-D8 on Cityscapes, the SGS paper's recipe (SemSeg's): the R18
# paper config (every setting and its source is commented there) with a
# 34-layer backbone (BasicBlock: the same 512/256-channel C5/C4, so the same
# heads), initialised from the ResNet-34 ImageNet stage.
_base_ = ['./pspnet_r18-d8_8xb2-paper200e_cityscapes-713x713.py']
model = dict(
    backbone=dict(
        depth=34,
        init_cfg=dict(
            checkpoint='work_dirs/resnet34_8xb32-paper120e_in1k/epoch_120.pth'
        )))
