# PSPNet-R18-D8 Cityscapes with SGS, fine-tuned from the SGS-pretrained
# ResNet-18. mmseg trains by iterations: one Cityscapes epoch is ~372
# iterations at batch 8, so the paper's "every 5 epochs after 1 warm-up
# epoch" becomes interval=2000, warmup=400 iterations. diag_removal=True as
# for ImageNet (high-resolution images).
# The hook is written inline (not via ../_base_/sgs_imagenet.py) because the
# parent config already defines custom_imports; switch it off with
# --cfg-options custom_hooks.0.enabled=False, change k with custom_hooks.0.k=3.
_base_ = ['./pspnet_r18-d8_4xb2-80k_cityscapes-512x1024.py']
pretrained = 'work_dirs/resnet18_8xb32-paper120e_in1k_sgs/epoch_120.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
custom_hooks = [dict(type='SpatialGradScalingHook', method='nmi', k=5,
                     interval=2000, warmup=400, num_batches=2,
                     diag_removal=True, by_epoch=None, mode='grad',
                     include=None, exclude=None, enabled=True)]
