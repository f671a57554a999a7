# The paper's downstream study (PAPER.md A.4, Tables 7-8) for ResNet-34:
# ImageNet pretrain (paper recipe) with and without SGS, then PSPNet-R34-D8
# on Cityscapes and SimpleBaseline-R34 on MPII, the baseline chain without
# SGS and the SGS chain with SGS in both stages.
#   python tools/pipeline.py configs/pipeline/paper_r34.py --launcher pytorch --nproc 8
# The pretrain configs assume 8 processes x 32 images, the PSPNet ones 4 x 2
# and SimpleBaseline 8 x 64; adjust with per-stage nproc/cfg_options.
title = 'SGS downstream study, ResNet-34'
work_root = 'work_dirs/paper_r34'
stages = [
    dict(name='pretrain_r34',
         config='configs/pretrain/resnet34_8xb32-paper120e_in1k.py',
         table=dict(model='ResNet-34', variant='Baseline')),
    dict(name='pretrain_r34_sgs',
         config='configs/pretrain/resnet34_8xb32-paper120e_in1k_sgs.py',
         table=dict(model='ResNet-34', variant='SGS')),
    dict(name='pspnet_r34',
         config='configs/pspnet/pspnet_r34-d8_4xb2-80k_cityscapes-512x1024.py',
         init_from='pretrain_r34', nproc=4,
         table=dict(model='PSPNet-34', variant='Baseline')),
    dict(name='pspnet_r34_sgs',
         config='configs/pspnet/pspnet_r34-d8_4xb2-80k_cityscapes-512x1024_sgs.py',
         init_from='pretrain_r34_sgs', nproc=4,
         table=dict(model='PSPNet-34', variant='SGS')),
    dict(name='simplebaseline_r34',
         config='configs/simplebaseline/td-hm_res34_8xb64-210e_mpii-256x256.py',
         init_from='pretrain_r34',
         table=dict(model='MSRA ResNet-34', variant='Baseline')),
    dict(name='simplebaseline_r34_sgs',
         config='configs/simplebaseline/td-hm_res34_8xb64-210e_mpii-256x256_sgs.py',
         init_from='pretrain_r34_sgs',
         table=dict(model='MSRA ResNet-34', variant='SGS')),
]
