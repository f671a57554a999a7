# SimpleBaseline (MSRA ResNet-34) on MPII, the SGS paper's recipe
# (Pytorch-Pose-HG-3D's): the ResNet-18 paper config (every setting and its
# source is commented there) with a 34-layer backbone (BasicBlock: the same
# 512-channel head input), initialised from the ResNet-34 ImageNet stage.
_base_ = ['./td-hm_res18_1xb32-paper140e_mpii-256x256.py']
model = dict(
    backbone=dict(
        depth=34,
        init_cfg=dict(
            checkpoint='work_dirs/resnet34_8xb32-paper120e_in1k/epoch_120.pth'
        )))
