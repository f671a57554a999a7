# ImageNet-1k ResNet-50, the SGS paper's recipe: the ResNet-18 paper config
# (every setting and its source is commented there) with a 50-layer backbone.
_base_ = ['./resnet18_8xb32-paper120e_in1k.py']
model = dict(backbone=dict(depth=50), head=dict(in_channels=2048))
