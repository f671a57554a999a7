# ResNet-18, the SGS paper's ImageNet recipe with SGS on (every 5 epochs,
# 2 batches, 1 warm-up epoch, diag_removal=True, k=5).
_base_ = ['./resnet18_8xb32-paper120e_in1k.py', '../_base_/sgs_imagenet.py']
