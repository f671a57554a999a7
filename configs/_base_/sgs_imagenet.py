# SGS with the paper's ImageNet settings (Sec. 4.2 / 3.3; the authors'
# configs/strategies/SGS/resnet.yaml: sgs_k 5, sgs_epochs 5,
# sgs_train_batches 2, sgs_diagonal_removal True): refresh every 5 epochs from
# 2 random train batches after a 1-epoch warm-up, k=5, and the "remove near
# values" variant of the mutual information (diag_removal). Use and
# command-line switches as in ./sgs.py.
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, unit='epoch', num_batches=2, diag_removal=True,
         mode='grad', include=None, exclude=None, enabled=True)
]
