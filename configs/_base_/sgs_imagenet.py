# SGS with the paper's ImageNet settings (Sec. 4.2): refresh every 5 epochs
# from 2 random train batches after a 1-epoch warm-up, k=5, and the
# "remove near values" variant of the mutual information (diag_removal).
# Command-line switches as in ./sgs.py (custom_hooks.0.enabled=False, ...).
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
sgs_hook = dict(
    type='SpatialGradScalingHook',
    method='nmi',
    k=5,
    interval=5,
    warmup=1,
    num_batches=2,
    diag_removal=True,
    by_epoch=None,
    mode='grad',
    include=None,
    exclude=None,
    enabled=True)
custom_hooks = [sgs_hook]
