# ResNet-34, OpenMMLab's standard mmpretrain recipe with SGS: exactly
# ./resnet34_8xb32_in1k.py plus the SGS hook with the paper's ImageNet
# settings (Sec. 4.2 / 3.3: k=5, every 5 epochs, 2 batches, 1 warm-up epoch,
# diag_removal; sources in ./resnet18_8xb32-paper120e_in1k_sgs.py).
_base_ = ['./resnet34_8xb32_in1k.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, unit='epoch', num_batches=2, diag_removal=True,
         mode='grad', enabled=True)
]
