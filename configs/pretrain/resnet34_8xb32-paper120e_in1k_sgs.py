# ResNet-34, the SGS paper's ImageNet recipe with SGS on: exactly
# ./resnet34_8xb32-paper120e_in1k.py plus the SGS hook, whose settings and
# their sources are those of ./resnet18_8xb32-paper120e_in1k_sgs.py.
_base_ = ['./resnet34_8xb32-paper120e_in1k.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, unit='epoch', num_batches=2, diag_removal=True,
         mode='grad', enabled=True)
]
