# Spatial Gradient Scaling (SGS) as a training hook: add this file to a
# config's `_base_` list to turn SGS on. Paper defaults (CIFAR): k=5, refresh
# every 5 epochs from 2 train batches after 1 warm-up epoch. For
# iteration-based loops (mmseg) `interval`/`warmup` count iterations.
#
# Command line (mmengine --cfg-options):
#   custom_hooks.0.enabled=False   switch SGS off (other custom hooks stay)
#   custom_hooks=[]                drop all custom hooks (SGS included)
#   custom_hooks.0.k=3             change k (any other argument likewise)
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
sgs_hook = dict(
    type='SpatialGradScalingHook',
    method='nmi',
    k=5,
    interval=5,
    warmup=1,
    num_batches=2,
    diag_removal=False,
    by_epoch=None,  # None: follow the train loop (epochs or iterations)
    mode='grad',
    include=None,
    exclude=None,
    enabled=True)
custom_hooks = [sgs_hook]
