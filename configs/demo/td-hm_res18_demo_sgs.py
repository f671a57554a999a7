# Demo SimpleBaseline-R18 with SGS: exactly ./td-hm_res18_demo.py plus the
# SGS hook (custom_hooks[0]; the baseline's SyncBuffersHook follows): refresh
# after the 1-epoch warm-up and every 2 epochs (the demo trains a few epochs).
# diag_removal=False downstream, as in configs/simplebaseline.
_base_ = ['./td-hm_res18_demo.py']
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, unit='epoch',
         interval=2, warmup=1, num_batches=2, diag_removal=False, mode='grad',
         enabled=True),
] + _base_.custom_hooks  # mmpose's SyncBuffersHook
