# ImageNet-1k ResNet-50, OpenMMLab's standard mmpretrain recipe
# (mmpretrain::resnet/resnet50_8xb32_in1k.py: 100 epochs, batch 8x32, SGD
# lr 0.1 with steps at 30/60/90, wd 1e-4): NOT the SGS paper's recipe, which
# is ./resnet50_8xb32-paper120e_in1k.py. Plain 7x7-stem ResNet: its
# `backbone.*` weights load unchanged into mmseg's and mmpose's ResNet
# (configs/pspnet, configs/simplebaseline).
_base_ = ['mmpretrain::resnet/resnet50_8xb32_in1k.py']
# the same imports as the *_sgs.py variant, so the two differ by the hook only
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint'], allow_failed_imports=False)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', interval=1, max_keep_ckpts=3,
        save_best='auto'))
