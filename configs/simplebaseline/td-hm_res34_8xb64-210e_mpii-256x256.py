# SimpleBaseline (MSRA ResNet-34) top-down heatmap pose estimation on MPII
# 256x256, OpenMMLab's standard mmpose recipe (210 epochs, 8 GPUs x 64, see
# the ResNet-18 config): the ResNet-18 config with a 34-layer backbone
# (BasicBlock, the same 512-channel head input). NOT the SGS paper's recipe:
# that is ./td-hm_res34_1xb32-paper140e_mpii-256x256.py. Metric and data
# notes: see the ResNet-18 config.
# Other checkpoint: --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['./td-hm_res18_8xb64-210e_mpii-256x256.py']
model = dict(
    backbone=dict(
        depth=34,
        init_cfg=dict(
            checkpoint='work_dirs/resnet34_8xb32-paper120e_in1k/epoch_120.pth'
        )))
