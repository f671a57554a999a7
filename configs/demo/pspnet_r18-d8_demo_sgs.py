# Demo PSPNet-R18-D8 with SGS: exactly ./pspnet_r18-d8_demo.py plus the SGS
# hook. The hook follows mmseg's iteration-based loop here (unit left at
# None): it refreshes at iteration 20 (warm-up) and every 50 iterations after
# it (the paper-recipe configs count epochs instead: unit='epoch').
# diag_removal=False downstream, as in configs/pspnet (the paper removes near
# values on ImageNet only, Sec. 3.3).
_base_ = ['./pspnet_r18-d8_demo.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=50,
         warmup=20, num_batches=2, diag_removal=False, mode='grad',
         enabled=True)
]
