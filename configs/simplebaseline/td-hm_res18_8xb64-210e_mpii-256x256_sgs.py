# SimpleBaseline ResNet-18 MPII with SGS, fine-tuned from the SGS-pretrained
# ResNet-18: refresh every 5 epochs from 2 batches after 1 warm-up epoch.
# SGS is custom_hooks[0]; mmpose's SyncBuffersHook stays as custom_hooks[1].
# Inline hook (the parent defines custom_imports/custom_hooks, which a second
# _base_ may not redefine); --cfg-options custom_hooks.0.enabled=False
# switches SGS off, custom_hooks.0.k=3 changes k.
_base_ = ['./td-hm_res18_8xb64-210e_mpii-256x256.py']
pretrained = 'work_dirs/resnet18_8xb32-paper120e_in1k_sgs/epoch_120.pth'
model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained)))
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, num_batches=2, diag_removal=True, by_epoch=None,
         mode='grad', include=None, exclude=None, enabled=True),
    dict(type='SyncBuffersHook'),
]
