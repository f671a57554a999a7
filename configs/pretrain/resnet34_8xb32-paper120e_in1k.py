# ImageNet-1k ResNet-34, the SGS paper's recipe (Sec. 4.2): 120 epochs,
# batch 256 (8 GPUs x 32), SGD lr 0.1 with cosine annealing, weight decay
# 1e-4, colour jitter. The paper's text says "momentum of 0.1"; the code it
# builds on (DyRep) uses 0.9, which we keep.
_base_ = ['./resnet34_8xb32_in1k.py']
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4))
param_scheduler = dict(
    _delete_=True,
    type='CosineAnnealingLR',
    T_max=120,
    by_epoch=True,
    begin=0,
    end=120)
train_cfg = dict(by_epoch=True, max_epochs=120, val_interval=1)
