# SimpleBaseline (MSRA ResNet-18) top-down heatmap pose estimation on MPII
# 256x256, OpenMMLab's standard mmpose recipe
# (mmpose::body_2d_keypoint/topdown_heatmap/mpii/td-hm_res50_8xb64-210e_mpii-
# 256x256.py: 210 epochs, 8 GPUs x 64, Adam lr 5e-4 with 500-iteration
# warm-up and steps at 170/200, rotation up to 80 degrees), NOT the SGS
# paper's recipe: that is ./td-hm_res18_1xb32-paper140e_mpii-256x256.py
# (Pytorch-Pose-HG-3D's). Backbone initialised from our ImageNet pretrain
# stage (configs/pretrain/resnet18_8xb32-paper120e_in1k.py). Metric:
# MpiiPCKAccuracy (PCKh@0.5 = 'PCK').
# mmpose ships ResNet-50 only; 18 changes the depth and the head input
# (512 channels).
# Other checkpoint: --cfg-options model.backbone.init_cfg.checkpoint=PATH
# Data: data/mpii/images/*.jpg, data/mpii/annotations/mpii_{train,val}.json
# and annotations/mpii_gt_val.mat (head boxes). Other root: override
# {train,val,test}_dataloader.dataset.data_root and
# {val,test}_dataloader.dataset.headbox_file (an absolute/cwd path).
_base_ = [
    'mmpose::body_2d_keypoint/topdown_heatmap/mpii/'
    'td-hm_res50_8xb64-210e_mpii-256x256.py'
]
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
model = dict(
    backbone=dict(
        depth=18,
        # mmpose's ResNet zero-initialises the last BN of each block after
        # init unless init_cfg.type == 'Pretrained': off, it would overwrite
        # the loaded weights
        zero_init_residual=False,
        init_cfg=dict(
            _delete_=True,
            type='StrictPretrained',
            checkpoint='work_dirs/resnet18_8xb32-paper120e_in1k/epoch_120.pth',
            prefix='backbone.')),
    head=dict(in_channels=512))
