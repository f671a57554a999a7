# Demo pretrain stage with SGS: exactly ./resnet18_demo.py plus the SGS hook
# with the paper's ImageNet settings (k=5, 2 batches, warm-up 1 epoch,
# diag_removal) on the 4-epoch demo schedule, refreshing at epochs 1 and 2
# (interval 2 instead of 5).
_base_ = ['./resnet18_demo.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, unit='epoch',
         interval=2, warmup=1, num_batches=2, diag_removal=True, mode='grad',
         enabled=True)
]
