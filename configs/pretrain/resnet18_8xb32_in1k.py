# ImageNet-1k ResNet-18, mmpretrain's standard recipe (100 epochs, batch
# 8x32, SGD lr 0.1 step at 30/60/90, wd 1e-4). Plain 7x7-stem ResNet: its
# `backbone.*` weights load unchanged into mmseg's and mmpose's ResNet
# (configs/pspnet, configs/simplebaseline).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=3,
        save_best='auto'))
