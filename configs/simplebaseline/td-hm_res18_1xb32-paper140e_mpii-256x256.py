# SimpleBaseline (MSRA ResNet-18) on MPII 256x256, the SGS paper's recipe
# (PAPER.md A.4, Table 8): "we use the training code and strategy from
# Pytorch-Pose-HG-3D" (github.com/xingyizhou/pytorch-pose-hg-3d, its
# `python main.py --exp_id mpii` 2D stage). Every setting names its source:
#   opts  = src/lib/opts.py (defaults; dataset 'mpii', arch msra_*)
#   main  = src/main.py, model = src/lib/model.py, train = src/lib/train.py,
#   mpii  = src/lib/datasets/mpii.py, net = src/lib/models/msra_resnet.py
#   pckh  = src/tools/eval_PCKh.py
# Where mmpose cannot express the code exactly, the comment says what
# differs (docs/paper.md lists these). The code's behaviour that mmpose lacks
# comes from sgs_mm: ClippedNormalBBoxTransform, ClampBBoxScaleToImage
# (sgs_mm.transforms.*), MpiiPCKhMeans (sgs_mm.evaluation.mpii_pckh_means).
_base_ = [
    'mmpose::body_2d_keypoint/topdown_heatmap/mpii/'
    'td-hm_res50_8xb64-210e_mpii-256x256.py'
]
custom_imports = dict(
    imports=['sgs_mm', 'sgs_mm.checkpoint',
             'sgs_mm.transforms.clipped_normal_bbox_transform',
             'sgs_mm.transforms.clamp_bbox_scale',
             'sgs_mm.evaluation.mpii_pckh_means'],
    allow_failed_imports=False)

# ---------------------------------------------------------------- schedule
# opts: num_epochs 140; main: epochs 1..140, after epoch 90 and 120 lr =
# lr * 0.1 ** k (opts lr_step '90,120'); no warm-up
max_epochs = 140
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
# model: torch.optim.Adam(model.parameters(), opt.lr): lr 1e-3 (opts lr),
# default betas/eps, no weight decay (opts weight_decay 0.0, and the
# optimiser is built without it)
optim_wrapper = dict(
    optimizer=dict(type='Adam', lr=1e-3, weight_decay=0.0))
param_scheduler = [
    dict(type='MultiStepLR', begin=0, end=max_epochs, milestones=[90, 120],
         gamma=0.1, by_epoch=True)
]
# opts: batch_size 32 per GPU, gpus '0' -> one GPU, batch 32
auto_scale_lr = dict(base_batch_size=32)
# main: validation every opts.val_intervals = 5 epochs (it saves model_best
# by heatmap accuracy there); the pipeline reports the final checkpoint and
# the best validation only as a labelled extra column (by `PCK`, mmpose's
# joint-count-weighted PCKh = PCKh_weighted below)
default_hooks = dict(
    checkpoint=dict(
        type='CheckpointHook', interval=5, max_keep_ckpts=2,
        save_best='PCK', rule='greater'))

# ------------------------------------------------------------------- model
# opts: input 256x256, output 64x64, hm_gauss 2 (mpii draw_gaussian)
codec = dict(
    type='MSRAHeatmap', input_size=(256, 256), heatmap_size=(64, 64), sigma=2)
model = dict(
    # mpii: (img / 256 - mean) / std with the ImageNet mean/std
    # (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225), i.e. in 0-255 pixels
    # mean x 256 and std x 256 (not x 255); the code applies these RGB
    # statistics to the cv2 (BGR) image, here the image is converted to RGB
    # first, as the ImageNet stage saw it
    data_preprocessor=dict(
        type='PoseDataPreprocessor',
        mean=[0.485 * 256, 0.456 * 256, 0.406 * 256],
        std=[0.229 * 256, 0.224 * 256, 0.225 * 256],
        bgr_to_rgb=True),
    backbone=dict(
        type='ResNet',
        depth=18,
        # mmpose's ResNet zero-initialises the last BN of each block after
        # init unless init_cfg.type == 'Pretrained': off, it would overwrite
        # the loaded weights
        zero_init_residual=False,
        init_cfg=dict(
            _delete_=True,
            type='StrictPretrained',
            checkpoint='work_dirs/resnet18_8xb32-paper120e_in1k/epoch_120.pth',
            prefix='backbone.')),
    head=dict(
        type='HeatmapHead',
        in_channels=512,
        out_channels=16,  # opts: num_output 16 (MPII)
        # net: 3 x (ConvTranspose 4x4 stride 2, no bias, 256 ch + BN + ReLU),
        # then a 1x1 conv; init normal(0, 0.001): mmpose's HeatmapHead
        deconv_out_channels=(256, 256, 256),
        deconv_kernel_sizes=(4, 4, 4),
        # train: torch.nn.MSELoss() over all heatmaps (no target weights;
        # joints outside the crop or unlabelled have all-zero targets)
        loss=dict(type='KeypointMSELoss', use_target_weight=False),
        decoder=codec),
    # train (val step): average with the flipped image's heatmaps, flipped
    # back and left/right swapped, without a 1-pixel shift. Decoding: the
    # code takes the integer argmax (utils/eval.py get_preds); mmpose's
    # MSRAHeatmap always adds the quarter-pixel refinement.
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=False))

# -------------------------------------------------------------------- data
# mpii: centre moved down by 15 * scale and box = scale * 200 * 1.25: mmpose's
# MpiiDataset + GetBBoxCenterScale(padding=1.25)
train_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    # opts flip 0.5
    dict(type='RandomFlip', direction='horizontal', prob=0.5),
    # mpii: s * clip(N(1, 0.25), 0.75, 1.25) (opts scale 0.25: std 0.18
    # after clipping, 32 % of the draws at the bounds); with probability 0.6
    # r = clip(N(0, 30), -60, 60) degrees (opts rotate 30), else 0; no shift.
    # (mmpose's RandomBBoxTransform would draw truncated normals instead)
    dict(type='ClippedNormalBBoxTransform', scale_std=0.25,
         scale_range=(0.75, 1.25), rotate_std=30.0, rotate_range=(-60.0, 60.0),
         rotate_prob=0.6),
    # mpii: s = min(s, max(img.shape[0], img.shape[1])) after the scale draw
    dict(type='ClampBBoxScaleToImage'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='GenerateTarget', encoder=codec),
    dict(type='PackPoseInputs')
]
val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    # mpii: the same clamp at test time
    dict(type='ClampBBoxScaleToImage'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs')
]
train_dataloader = dict(
    batch_size=32,  # opts batch_size 32 x 1 GPU
    num_workers=4,  # opts num_workers 4
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=val_pipeline))
test_dataloader = val_dataloader
# val: PCKh@0.5 (SC_BIAS 0.6, without pelvis and thorax) on
# annotations/mpii_gt_val.mat, reported two ways (MpiiPCKhMeans):
#   PCKh_mean     plain mean of the 14 per-joint PCKh: pckh's printed "Mean"
#                 (the paper's Table 8)
#   PCKh_weighted joints weighted by their visible count: mmpose's `PCK`
#                 (also kept under that name) and the MPII benchmark's Total
val_evaluator = dict(type='MpiiPCKhMeans')
test_evaluator = val_evaluator
