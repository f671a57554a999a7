# ResNet-18, the SGS paper's ImageNet recipe with SGS on: exactly
# ./resnet18_8xb32-paper120e_in1k.py plus the SGS hook (tests/
# test_paper_recipes.py checks that nothing else differs).
#   k=5                      paper Sec. 4.2 (k from the CIFAR-100 search);
#                            authors resnet.yaml `sgs_k: 5`
#   interval=5 (epochs)      paper Sec. 4.2 "every 5 epochs"; `sgs_epochs: 5`
#   num_batches=2 (per rank) paper Sec. 4.2 "two random training batches";
#                            `sgs_train_batches: 2` (each rank's batch of 32)
#   warmup=1 (epoch)         paper Sec. 4.2 "after a one-epoch model warm-up"
#   diag_removal=True        paper Sec. 3.3 ("on ImageNet, we remove ... near
#                            in pixel values"); `sgs_diagonal_removal: True`
# Switch off: --cfg-options custom_hooks.0.enabled=False.
_base_ = ['./resnet18_8xb32-paper120e_in1k.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, unit='epoch', num_batches=2, diag_removal=True,
         mode='grad', enabled=True)
]
