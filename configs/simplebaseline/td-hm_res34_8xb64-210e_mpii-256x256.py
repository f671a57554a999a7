# SimpleBaseline (MSRA ResNet-34) top-down heatmap pose estimation on MPII
# 256x256 (mmpose's 210-epoch recipe), backbone initialised from our ImageNet
# pretrain stage (configs/pretrain/resnet34_8xb32-paper120e_in1k.py), as in
# the SGS paper's Table 8. Metric: MpiiPCKAccuracy (PCKh@0.5 = 'PCK').
# mmpose ships ResNet-50 only; 18/34 change the depth and the head input
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
pretrained = 'work_dirs/resnet34_8xb32-paper120e_in1k/epoch_120.pth'
model = dict(
    backbone=dict(
        depth=34,
        # mmpose's ResNet zero-initialises the last BN of each block after
        # init unless init_cfg.type == 'Pretrained': off, it would overwrite
        # the loaded weights
        zero_init_residual=False,
        init_cfg=dict(
            _delete_=True,
            type='StrictPretrained',
            checkpoint=pretrained,
            prefix='backbone.')),
    head=dict(in_channels=512))
