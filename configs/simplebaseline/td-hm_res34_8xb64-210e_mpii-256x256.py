# SimpleBaseline (MSRA ResNet-34) top-down heatmap pose estimation on MPII
# 256x256: the ResNet-18 config with a 34-layer backbone (BasicBlock, the same
# 512-channel head input), initialised from our ImageNet pretrain stage
# (configs/pretrain/resnet34_8xb32-paper120e_in1k.py), as in the SGS paper's
# Table 8. Metric and data notes: see the ResNet-18 config.
# Other checkpoint: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./td-hm_res18_8xb64-210e_mpii-256x256.py']
pretrained = 'work_dirs/resnet34_8xb32-paper120e_in1k/epoch_120.pth'
model = dict(backbone=dict(depth=34, init_cfg=dict(checkpoint=pretrained)))
