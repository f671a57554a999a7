# Demo pretrain stage: mmpretrain ResNet-18 (plain stem, as configs/pretrain)
# on the synthetic 4-class "coloured shapes" ImageNet-format data
# (python -m sgs_mm.data.synthetic data/demo), 64 px, the paper's recipe in
# small: SGD cosine (lr 0.05 for batch 32), wd 1e-4, colour jitter. CPU, about a minute.
_base_ = ['mmpretrain::_base_/default_runtime.py']
# the same imports as ./resnet18_demo_sgs.py, so the two differ by the hook only
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
data_root = 'data/demo/imagenet'
classes = ('circle', 'square', 'triangle', 'cross')  # = meta/classes.txt
num_classes = len(classes)
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet', depth=18, num_stages=4, out_indices=(3, ),
        style='pytorch'),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.6, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=64, edge='short'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=0,  # no worker processes: cheaper on a 2-core CPU
    persistent_workers=False,
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='train',
        classes=classes,
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=50,
    num_workers=0,  # no worker processes: cheaper on a 2-core CPU
    persistent_workers=False,
    dataset=dict(
        type='ImageNet',
        data_root=data_root,
        split='val',
        classes=classes,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator
max_epochs = 4
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=25),
    dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True, begin=0,
         end=max_epochs),
]
# no validation during training (val_begin after the last epoch; mmengine
# would otherwise validate after the last epoch): tools/test.py evaluates
# the final checkpoint (train_cfg.val_begin=1 validates every val_interval)
train_cfg = dict(
    by_epoch=True, max_epochs=max_epochs, val_begin=max_epochs + 1,
    val_interval=1)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1))
randomness = dict(seed=0)
