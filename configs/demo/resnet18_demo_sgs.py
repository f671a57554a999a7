# Demo pretrain stage with SGS: the paper's ImageNet SGS settings (k=5,
# 2 batches, warm-up 1 epoch, diag_removal) on the 4-epoch demo schedule,
# refreshing at epochs 1 and 2 (interval 2 instead of 5).
_base_ = ['./resnet18_demo.py', '../_base_/sgs_imagenet.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=2,
         warmup=1, num_batches=2, diag_removal=True, by_epoch=None,
         mode='grad', include=None, exclude=None, enabled=True)
]
