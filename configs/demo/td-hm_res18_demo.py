# Demo fine-tune stage: mmpose SimpleBaseline (top-down heatmap, plain-stem
# ResNet-18 backbone, as configs/simplebaseline) on the synthetic MPII-format
# stick figures (python -m sgs_mm.data.synthetic data/demo), 96x96 input,
# 24x24 heatmaps, evaluated with MpiiPCKAccuracy (PCKh@0.5, head boxes from
# annotations/mpii_gt_val.mat). Backbone from the demo pretrain stage:
#   --cfg-options model.backbone.init_cfg.checkpoint=PATH
_base_ = ['mmpose::_base_/default_runtime.py']
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
data_root = 'data/demo/mpii/'
max_epochs = 6
# no validation during training (val_begin after the last epoch):
# tools/test.py evaluates the final checkpoint
train_cfg = dict(
    max_epochs=max_epochs, val_begin=max_epochs + 1, val_interval=1)
optim_wrapper = dict(optimizer=dict(type='Adam', lr=2e-3))
param_scheduler = [
    dict(type='LinearLR', begin=0, end=20, start_factor=0.01, by_epoch=False),
    dict(type='CosineAnnealingLR', T_max=max_epochs, begin=0, end=max_epochs,
         by_epoch=True)
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1))
codec = dict(
    type='MSRAHeatmap', input_size=(96, 96), heatmap_size=(24, 24), sigma=1)
model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=18,
        # mmpose's ResNet zero-initialises the last BN of each block after
        # init unless init_cfg.type == 'Pretrained': off, it would overwrite
        # the loaded weights
        zero_init_residual=False,
        init_cfg=dict(
            type='StrictPretrained', checkpoint=None, prefix='backbone.')),
    head=dict(
        type='HeatmapHead',
        in_channels=512,
        out_channels=16,
        deconv_out_channels=(128, 128, 128),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=True))
dataset_type = 'MpiiDataset'
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='RandomFlip', direction='horizontal'),
    dict(type='RandomBBoxTransform', shift_prob=0, rotate_factor=20),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]
train_dataloader = dict(
    batch_size=16,
    num_workers=0,  # no worker processes: cheaper on a 2-core CPU
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode='topdown',
        ann_file='annotations/mpii_train.json',
        data_prefix=dict(img='images/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=25,
    num_workers=0,  # no worker processes: cheaper on a 2-core CPU
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False, round_up=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        data_mode='topdown',
        ann_file='annotations/mpii_val.json',
        headbox_file=data_root + 'annotations/mpii_gt_val.mat',
        data_prefix=dict(img='images/'),
        test_mode=True,
        pipeline=val_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='MpiiPCKAccuracy')
test_evaluator = val_evaluator
randomness = dict(seed=0)
