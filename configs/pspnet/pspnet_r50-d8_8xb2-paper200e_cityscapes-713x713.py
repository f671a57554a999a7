# PSPNet-R50-D8 on Cityscapes, the SGS paper's recipe: SemSeg's
# config/cityscapes/cityscapes_pspnet50.yaml. The R18 paper config (every
# setting and its source is commented there) with a 50-layer backbone: C5 has
# 2048 channels (PPM branches 2048 / 4 = 512 as in SemSeg), C4 1024.
_base_ = ['./pspnet_r18-d8_8xb2-paper200e_cityscapes-713x713.py']
model = dict(
    backbone=dict(
        depth=50,
        init_cfg=dict(
            checkpoint='work_dirs/resnet50_8xb32-paper120e_in1k/epoch_120.pth'
        )),
    decode_head=dict(in_channels=2048),
    auxiliary_head=dict(in_channels=1024))
