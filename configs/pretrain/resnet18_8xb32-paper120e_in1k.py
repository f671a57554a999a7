# ImageNet-1k ResNet-18, the SGS paper's recipe: the paper's Sec. 4.2 where it
# states a value, the authors' code where the paper is silent.
#   paper   = PAPER.md Sec. 4.2 ("120 epochs, batch size of 256, cosine
#             annealing scheduler with initial lr of 0.1, color jitter
#             augmentation, and SGD with a momentum of 0.1 and weight decay
#             1e-4")
#   authors = Ascend-Research/Reparameterization
#             configs/strategies/SGS/resnet.yaml (+ tools/train.py) and its
#             training base hunto/image_classification_sota @3a374df
#             lib/utils/{args,optim,scheduler}.py, lib/dataset/{builder,
#             transform}.py
# Momentum: the paper's text says 0.1; the authors' resnet.yaml says
# `momentum: 0.9`. 0.1 is a typo in the paper: do not "fix" it here (SGD with
# momentum 0.1 at lr 0.1 trains a much worse ResNet).
# Plain 7x7-stem mmpretrain ResNet (the authors' `resnet18`, torchvision
# layout): its `backbone.*` weights load unchanged into mmseg's and mmpose's
# ResNet (configs/pspnet, configs/simplebaseline).
_base_ = ['./resnet18_8xb32_in1k.py']
model = dict(
    backbone=dict(
        # authors: lib/models/resnet.py (torchvision's ResNet)
        # zero_init_residual=False: the last BN of each block starts at 1
        # (mmpretrain's default True starts it at 0); convs Kaiming-normal
        # fan_out and BN 1/0 are mmpretrain's default init_cfg, the same
        zero_init_residual=False),
    # authors: the fc keeps PyTorch's nn.Linear default init (torchvision
    # initialises only convs and BNs); mmpretrain's LinearClsHead would
    # draw it from Normal(0, 0.01)
    head=dict(init_cfg=None))
# authors: lib/dataset/dataset.py reads every image with
# PIL Image.open(...).convert('RGB') (no EXIF rotation) and every resize is
# PIL bilinear: mmcv's pillow decoder with 'color_ignore_orientation' and
# mmpretrain's backend='pillow' (OpenCV otherwise)
train_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow',
         color_type='color_ignore_orientation'),
    # authors: lib/dataset/transform.py RandomResizedCropAndInterpolation(224,
    # bilinear) = scale (0.08, 1), ratio (3/4, 4/3), mmpretrain's defaults;
    # PIL bilinear resize of the crop
    dict(type='RandomResizedCrop', scale=224, interpolation='bilinear',
         backend='pillow'),
    # authors: transforms.RandomHorizontalFlip() (p=0.5)
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    # paper: "color jitter"; strength from authors: resnet.yaml
    # `color_jitter: 0.06` -> transforms.ColorJitter(0.06, 0.06, 0.06)
    # (brightness, contrast, saturation; no hue)
    dict(type='ColorJitter', brightness=0.06, contrast=0.06, saturation=0.06),
    dict(type='PackInputs'),
]
# test: authors' build_val_transforms = Resize(256, PIL bilinear) +
# CenterCrop(224): mmpretrain's ResizeEdge (short side 256, the long side
# truncated to int as torchvision) with the pillow backend + CenterCrop
test_pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow',
         color_type='color_ignore_orientation'),
    dict(type='ResizeEdge', scale=256, edge='short', interpolation='bilinear',
         backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
train_dataloader = dict(
    # paper: batch 256 = 8 GPUs x 32 (authors: tools/train.py divides
    # `batch_size: 256` by the world size; README runs 8 GPUs)
    batch_size=32,
    # authors: lib/dataset/builder.py, train DataLoader(drop_last=True)
    drop_last=True,
    dataset=dict(pipeline=train_pipeline))
optim_wrapper = dict(
    # paper: SGD, lr 0.1, weight decay 1e-4; momentum 0.9 from the authors
    # (see the note above); authors: Nesterov on (lib/utils/args.py
    # --sgd-no-nesterov defaults to False, resnet.yaml does not set it,
    # lib/utils/optim.py SGD(nesterov=nesterov))
    optimizer=dict(
        type='SGD', lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
    # authors: no weight decay on BN weights/biases and on biases
    # (lib/utils/optim.py _add_weight_decay: 1-D params and `.bias` get
    # weight_decay 0; --opt-no-filter defaults to False, resnet.yaml does not
    # set it, unlike the CIFAR yamls, which set opt_no_filter: True)
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0))
param_scheduler = dict(
    _delete_=True,
    # paper: cosine annealing from 0.1; authors: stepped every iteration
    # (resnet.yaml `decay_by_epoch: false`, tools/train.py calls
    # scheduler.step() after each batch), down to `min_lr: 1.0e-07`, no
    # warm-up (`warmup_epochs: 0`)
    type='CosineAnnealingLR',
    T_max=120,
    eta_min=1e-7,
    by_epoch=True,
    convert_to_iter_based=True,
    begin=0,
    end=120)
# paper: 120 epochs; authors validate after every epoch (tools/train.py)
train_cfg = dict(by_epoch=True, max_epochs=120, val_interval=1)
# authors: resnet.yaml `seed: 42`, tools/train.py seeds each rank with
# seed + rank (tools/pipeline.py --seeds N overrides randomness.seed)
randomness = dict(seed=42, diff_rank_seed=True)
