# ResNet-50, mmpretrain's standard recipe, with SGS (paper's ImageNet
# settings: every 5 epochs, 2 batches, warm-up 1 epoch, diag_removal).
_base_ = ['./resnet50_8xb32_in1k.py', '../_base_/sgs_imagenet.py']
