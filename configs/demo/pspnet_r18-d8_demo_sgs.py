# Demo PSPNet-R18-D8 with SGS: exactly ./pspnet_r18-d8_demo.py plus the SGS
# hook. The schedule counts epochs (unit='epoch', as the paper-recipe
# configs do) also on mmseg's iteration-based loop: the hook converts with
# the run's iterations per epoch (15 here: 60 images, batch 4, one process),
# refreshing after the 1-epoch warm-up and then at every 4th epoch (epochs 1,
# 4 and 8 = iterations 15, 60 and 120 of 150). diag_removal=False downstream, as in configs/pspnet (the
# paper removes near values on ImageNet only, Sec. 3.3).
_base_ = ['./pspnet_r18-d8_demo.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, unit='epoch',
         interval=4, warmup=1, num_batches=2, diag_removal=False, mode='grad',
         enabled=True)
]
