# A tiny SGS training config for tools/train.py (tests only): the SGSToyNet of
# tests/toy_runner.py on 32 deterministic images, 4 epochs, an SGS refresh at
# the start of every epoch from epoch 1 and a checkpoint after every epoch.
#
# Run it with tests/ and tests/scripts/ on PYTHONPATH (custom_imports below):
#   PYTHONPATH=tests:tests/scripts torchrun --nproc_per_node=2 tools/train.py \
#       tests/configs/toy_sgs_torchrun.py --launcher pytorch --work-dir W
# With 2 ranks and batch 4 an epoch is 4 iterations. The test hooks of
# tests/scripts/sgs_torchrun_hooks.py do nothing unless their environment
# variables are set (SGS_TEST_CRASH_AT_ITER, SGS_TEST_PROBE_DIR).
default_scope = 'mmpretrain'  # tools/train.py dispatches on it
custom_imports = dict(
    imports=['sgs_mm', 'toy_runner', 'sgs_torchrun_hooks'],
    allow_failed_imports=False)

model = dict(type='SGSToyNet')
train_dataloader = dict(
    dataset=dict(type='SGSToyDataset', length=32),
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='sgs_toy_collate'),
    batch_size=4,
    num_workers=0,
    persistent_workers=False)
train_cfg = dict(by_epoch=True, max_epochs=4)
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=1e-4))
# an explicit end, so that a resumed run keeps the same schedule
param_scheduler = dict(
    type='MultiStepLR', milestones=[3], by_epoch=True, begin=0, end=4)

custom_hooks = [
    dict(type='SpatialGradScalingHook', interval=1, warmup=1, num_batches=2),
    dict(type='SGSTestCrashHook'),
    dict(type='SGSTestDistProbeHook'),
]
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=-1),
    logger=dict(type='LoggerHook', interval=1000))

randomness = dict(seed=0, deterministic=True)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='gloo'))
log_level = 'INFO'
