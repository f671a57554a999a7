# PSPNet-R18-D8 Cityscapes, OpenMMLab's standard mmseg recipe with SGS:
# exactly ./pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py plus the SGS hook,
# fine-tuned from the SGS-pretrained ResNet-18. SGS settings and their
# sources as in ./pspnet_r18-d8_8xb2-paper200e_cityscapes-713x713_sgs.py:
# k=5, every 5 epochs from 2 batches after a 1-epoch warm-up, in epochs
# (unit='epoch': converted with the run's real iterations per epoch, 372 at
# 4 GPUs x 2, so another GPU count keeps the meaning), diag_removal=False.
# Switch off: --cfg-options custom_hooks.0.enabled=False.
_base_ = ['./pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py']
model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/resnet18_8xb32-paper120e_in1k_sgs/'
            'epoch_120.pth')))
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, unit='epoch', num_batches=2, diag_removal=False,
         mode='grad', enabled=True)
]
