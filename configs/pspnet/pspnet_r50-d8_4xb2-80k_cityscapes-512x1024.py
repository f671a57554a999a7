# PSPNet-R50-D8 on Cityscapes 512x1024, OpenMMLab's standard mmseg recipe
# (mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py: 80k
# iterations at 4 GPUs x 2 images, 512x1024 crops, SGD lr 0.01 for all
# parameters, wd 5e-4, PhotoMetricDistortion, whole-image test), NOT the SGS
# paper's recipe: that is ./pspnet_r50-d8_8xb2-paper200e_cityscapes-713x713.py
# (SemSeg's). Backbone initialised from our ImageNet pretrain stage
# (configs/pretrain/resnet50_8xb32-paper120e_in1k.py).
#
# Backbone: plain 7x7-stem ResNet (type='ResNet'), the architecture the
# ImageNet stage trains, instead of mmseg's default deep-stem ResNetV1c, so
# the checkpoint's backbone.* keys load 1:1 (StrictPretrained raises on any
# missing/unexpected key). Other checkpoint: --cfg-options
#   model.backbone.init_cfg.checkpoint=PATH
# SyncBN: kept for multi-GPU runs; mmengine reverts it to BN when the run is
# not distributed, and tools/train.py turns it into BN for CPU (gloo) runs.
# Data: data/cityscapes/{leftImg8bit,gtFine}/{train,val} with
# *_gtFine_labelTrainIds.png (mmseg tools/dataset_converters/cityscapes.py);
# other root: --cfg-options train_dataloader.dataset.data_root=... (and val/test).
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb2-80k_cityscapes-512x1024.py']
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNet',
        depth=50,
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='work_dirs/resnet50_8xb32-paper120e_in1k/epoch_120.pth',
            prefix='backbone.')),
)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=8000,
        max_keep_ckpts=3, save_best='mIoU'))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
