# ImageNet-1k ResNet-50, the SGS paper's recipe (Sec. 4.2): the ResNet-18
# paper config (120 epochs, SGD lr 0.1 cosine, wd 1e-4, colour jitter) with
# mmpretrain's ResNet-50 model.
_base_ = ['./resnet18_8xb32-paper120e_in1k.py']
model = dict(backbone=dict(depth=50), head=dict(in_channels=2048))
