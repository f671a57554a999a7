# Demo PSPNet-R18-D8 with SGS; mmseg trains by iterations, so the hook
# refreshes at iteration 20 (warm-up) and every 50 iterations after it.
_base_ = ['./pspnet_r18-d8_demo.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=50,
         warmup=20, num_batches=2, diag_removal=True, by_epoch=None,
         mode='grad', include=None, exclude=None, enabled=True)
]
