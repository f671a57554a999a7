# SimpleBaseline (MSRA ResNet-50) on MPII, the SGS paper's recipe
# (Pytorch-Pose-HG-3D's default arch msra_50): the ResNet-18 paper config
# (every setting and its source is commented there) with a 50-layer
# backbone (2048-channel head input), initialised from the ResNet-50
# ImageNet stage.
_base_ = ['./td-hm_res18_1xb32-paper140e_mpii-256x256.py']
model = dict(
    backbone=dict(
        depth=50,
        init_cfg=dict(
            checkpoint='work_dirs/resnet50_8xb32-paper120e_in1k/epoch_120.pth'
        )),
    head=dict(in_channels=2048))
