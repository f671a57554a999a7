# Demo SimpleBaseline-R18 with SGS: refresh after the 1-epoch warm-up and
# every 2 epochs (the demo trains a few epochs).
_base_ = ['./td-hm_res18_demo.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=2,
         warmup=1, num_batches=2, diag_removal=True, by_epoch=None,
         mode='grad', include=None, exclude=None, enabled=True),
    dict(type='SyncBuffersHook'),
]
