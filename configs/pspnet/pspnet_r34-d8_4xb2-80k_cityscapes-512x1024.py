# PSPNet-R34-D8 on Cityscapes 512x1024 (mmseg's 80k-iteration recipe,
# 4 GPUs x 2 images), backbone initialised from our ImageNet pretrain stage
# (configs/pretrain/resnet34_8xb32-paper120e_in1k.py), as in the SGS paper's
# Table 7.
# mmseg ships no R34 config; this one follows its R18 config (BasicBlock:
# 512-channel C5, heads of 128/64 channels).
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
pretrained = 'work_dirs/resnet34_8xb32-paper120e_in1k/epoch_120.pth'
model = dict(
    pretrained=None,
    backbone=dict(
        type='ResNet',
        depth=34,
        init_cfg=dict(
            type='StrictPretrained', checkpoint=pretrained,
            prefix='backbone.')),
    decode_head=dict(in_channels=512, channels=128),
    auxiliary_head=dict(in_channels=256, channels=64),
)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=8000,
        max_keep_ckpts=3, save_best='mIoU'))
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
