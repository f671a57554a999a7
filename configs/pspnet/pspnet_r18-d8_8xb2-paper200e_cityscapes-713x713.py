# PSPNet-R18-D8 on Cityscapes, the SGS paper's recipe (PAPER.md A.4, Table 7):
# "we adapt our training code and strategy from SemSeg"
# (github.com/hszhao/semseg). Every setting below names its source:
#   yaml  = semseg config/cityscapes/cityscapes_pspnet50.yaml
#   train = semseg tool/train.py, test = semseg tool/test.py,
#   model = semseg model/pspnet.py, tf = semseg util/transform.py
#   paper = PAPER.md A.4
# SemSeg ships PSPNet-50/101 only; ResNet-18/34 (paper: "PSPNet is composed of
# a ResNet-18/34/50 backbone") keep every setting and change the backbone.
# Where mmseg cannot express SemSeg exactly, the comment says what differs
# (docs/paper.md lists these). SemSeg's behaviour that mmseg lacks comes from
# sgs_mm: FullyDilatedResNet, SemSegPSPHead, TorchDefaultInitFCNHead,
# SoftmaxSlideEncoderDecoder (sgs_mm.models), CentredPad
# (sgs_mm.transforms.centred_pad).
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    'mmseg::_base_/datasets/cityscapes.py',
    'mmseg::_base_/default_runtime.py',
]
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint', 'sgs_mm.models',
             'sgs_mm.transforms.centred_pad'],
    allow_failed_imports=False)

# ---------------------------------------------------------------- schedule
# yaml: epochs 200, batch_size 16 over train_gpu [0..7] (8 GPUs x 2),
# multiprocessing_distributed. train: DistributedSampler + drop_last, so one
# epoch is ceil(2975 / 8) = 372 images per GPU = 186 iterations of 2 images,
# and max_iter = epochs * len(train_loader) = 200 * 186 = 37200. mmseg's
# loop counts iterations (InfiniteSampler), so 200 epochs = 37200 iterations
# at 8 GPUs x 2 images (37200 x 16 = 595200 images = 200.07 passes over the
# 2975 train images). With another GPU count or batch keep the product:
# max_iters = ceil(200 * 2975 / (gpus x batch)); from the command line set
# param_scheduler.0.end = max_iters + 1 with it (see the scheduler below).
epochs = 200
max_iters = 37200
# no validation during training in SemSeg (yaml: evaluate False); here every
# 20 epochs only for the learning curve and the pipeline's labelled
# "best-on-val" column (it does not change training); the reported number is
# the final checkpoint's (yaml TEST.model_path: train_epoch_200.pth).
val_interval = 3720
crop_size = (713, 713)  # yaml: train_h 713, train_w 713

# ------------------------------------------------------------------- model
norm_cfg = dict(type='SyncBN', requires_grad=True)  # yaml: sync_bn True
model = dict(
    # test: tool/test.py scale_process/net_process, see test_cfg below
    type='SoftmaxSlideEncoderDecoder',
    # training crops are already 713x713 (CentredPad + RandomCrop below), so
    # this pads nothing; it only guards the batch stacking
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        # plain 7x7-stem ResNet, the architecture the ImageNet stage trains
        # (SemSeg's model/resnet.py uses a deep stem, which the authors'
        # ImageNet ResNets do not have); backbone.* loads 1:1 from the
        # pretrain checkpoint (tools/pipeline.py passes the final one)
        # FullyDilatedResNet = mmseg's ResNet with conv2 of every dilated
        # BasicBlock dilated too (mmseg dilates only conv1); for ResNet-50
        # (Bottleneck: one 3x3 conv per block) it is mmseg's ResNet. model:
        # layer3/layer4 have stride 1 and every 3x3 conv dilated 2/4 (the
        # `conv2` of each Bottleneck, the only 3x3 conv there); SemSeg ships
        # no ResNet-18/34, whose D8 form dilates both 3x3 convs of each
        # BasicBlock (docs/paper.md: receptive field of a D8 network)
        type='FullyDilatedResNet',
        depth=18,
        norm_cfg=norm_cfg,
        # including each stage's first block -> no contraction
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        contract_dilation=False,
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='work_dirs/resnet18_8xb32-paper120e_in1k/epoch_120.pth',
            prefix='backbone.')),
    decode_head=dict(
        # model: PPM bins (1, 2, 3, 6), each branch fea_dim / 4 wide
        # (reduction_dim: 128 for the 512-channel ResNet-18/34, 512 for
        # ResNet-50), cls = 3x3 conv to 512 + BN + ReLU + Dropout2d(0.1) +
        # 1x1 conv. mmseg's PSPHead uses one width for both; SemSegPSPHead
        # (sgs_mm.models) sets the branch width apart, by SemSeg's rule, and
        # keeps PyTorch's default init for every conv/BN (SemSeg initialises
        # none of ppm/cls; mmseg would use Kaiming and Normal(0.01))
        type='SemSegPSPHead',
        in_channels=512,
        ppm_channels=None,  # in_channels // len(pool_scales)
        channels=512,
        pool_scales=(1, 2, 3, 6),
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=True,  # model: F.interpolate(..., align_corners=True)
        # train: nn.CrossEntropyLoss(ignore_index=255), mean over labelled
        # pixels; main loss weight 1
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
            avg_non_ignore=True)),
    auxiliary_head=dict(
        # model: aux = 3x3 conv on layer3 to 256 + BN + ReLU + Dropout2d(0.1)
        # + 1x1 conv; yaml: aux_weight 0.4. PyTorch default init, as SemSeg
        type='TorchDefaultInitFCNHead',
        in_channels=256,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        norm_cfg=norm_cfg,
        align_corners=True,
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
            avg_non_ignore=True)),
    # test: single scale (yaml scales [1.0], base_size 2048 = Cityscapes'
    # own size), sliding 713x713 windows with stride ceil(713 * 2/3) = 476
    # (scale_process stride_rate 2/3; an image smaller than a window is
    # padded centred with the mean). net_process: softmax of each window,
    # averaged with the softmax of its horizontal flip (window_flip); the
    # overlapping windows' probabilities are averaged
    # (SoftmaxSlideEncoderDecoder; mmseg averages raw scores, without flip)
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(476, 476),
                  window_flip=True))

# -------------------------------------------------------------------- data
# train (transform.Compose): RandScale([0.5, 2.0]) -> RandRotate([-10, 10],
# padding=mean, ignore_label=255, p=0.5) -> RandomGaussianBlur() ->
# RandomHorizontalFlip() -> Crop([713, 713], 'rand', padding=mean).
# Normalisation with the ImageNet mean/std in RGB: mmseg's defaults.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    # yaml scale_min 0.5, scale_max 2.0 (tf.RandScale: one uniform factor for
    # both sides of the 2048x1024 image)
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    # yaml rotate_min -10, rotate_max 10; tf.RandRotate p=0.5, image padded
    # with the mean colour (BGR here: mmseg loads BGR), label with 255
    dict(type='RandomRotate', prob=0.5, degree=10,
         pad_val=(103.53, 116.28, 123.675), seg_pad_val=255),
    # tf.RandomGaussianBlur: p=0.5, cv2.GaussianBlur(5x5, sigma 0 -> 1.1);
    # mmseg has no blur transform: mmpretrain's (PIL GaussianBlur, radius =
    # standard deviation 1.1, not truncated at 5x5) on the image only
    dict(type='mmpretrain.GaussianBlur', radius=1.1, prob=0.5),
    dict(type='RandomFlip', prob=0.5),  # tf.RandomHorizontalFlip p=0.5
    # tf.Crop(crop_type='rand', padding=mean): a side shorter than 713 is
    # first padded centred (int(pad / 2) before, the rest after), the image
    # with the mean colour (BGR, rounded to uint8 grey levels) and the label
    # with 255; then a uniformly placed 713x713 crop (no class-ratio check:
    # cat_max_ratio 1)
    dict(type='CentredPad', size=crop_size,
         pad_val=(103.53, 116.28, 123.675), seg_pad_val=255),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 1024), keep_ratio=True),  # base_size
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs')
]
# test: scales [1.0]; the flip is per window inside the model (window_flip
# above), so mmseg's `tools/test.py --tta` (not run by tools/test.py here)
# gets one scale without a whole-image flip instead of mmseg's multi-scale
# Cityscapes default
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(2048, 1024), keep_ratio=True)],
            [dict(type='LoadAnnotations')], [dict(type='PackSegInputs')]
        ])
]
train_dataloader = dict(
    batch_size=2,  # yaml batch_size 16 / 8 GPUs
    num_workers=2,  # yaml workers 16 / 8 GPUs
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# --------------------------------------------------------------- optimiser
# train: SGD(momentum 0.9, weight_decay 1e-4) over every parameter (BN
# included), base_lr 0.01 for the backbone (layer0-4) and base_lr x 10 for
# the new modules (ppm, cls, aux = mmseg's decode_head and auxiliary_head)
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
    paramwise_cfg=dict(
        custom_keys={
            'decode_head': dict(lr_mult=10.0),
            'auxiliary_head': dict(lr_mult=10.0)
        }),
    clip_grad=None)
# train/util.poly_learning_rate: iteration i (0-based) runs at
# lr = base_lr * (1 - i / max_iter) ** 0.9 (yaml power 0.9; the last one at
# base_lr * (1 / max_iter) ** 0.9, not 0); the x10 groups follow. mmengine's
# PolyLR runs iteration i at (1 - i / (end - begin - 1)) ** power, so
# end = max_iters + 1 gives SemSeg's denominator max_iter
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters + 1,
         by_epoch=False)
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    # final checkpoint always written (iter_37200.pth); best by val mIoU kept
    # only for the labelled extra column
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, interval=val_interval,
        max_keep_ckpts=2, save_best='mIoU'))
