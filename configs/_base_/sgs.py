# Spatial Gradient Scaling (SGS) as a training hook: add this file to a
# config's `_base_` list to turn SGS on (for a config whose other bases do not
# define custom_imports/custom_hooks, e.g. mmpretrain::resnet/...; otherwise
# write the hook inline, as configs/pretrain|pspnet|simplebaseline/*_sgs.py do).
# Paper defaults (CIFAR, PAPER.md A.1): k=5, refresh every 5 epochs from 2
# train batches after 1 warm-up epoch. unit='epoch' counts epochs on any loop
# (on mmseg's IterBasedTrainLoop the hook converts with the run's iterations
# per epoch); unit='iter' counts iterations.
#
# Command line (mmengine --cfg-options):
#   custom_hooks.0.enabled=False   switch SGS off (other custom hooks stay)
#   custom_hooks=[]                drop all custom hooks (SGS included)
#   custom_hooks.0.k=3             change k (any other argument likewise)
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, unit='epoch', num_batches=2, diag_removal=False, mode='grad',
         include=None, exclude=None, enabled=True)
]
