# The paper's downstream study (appendix A.4, Tables 7-8) for ResNet-50, with
# the paper's recipes: ImageNet pretrain (Sec. 4.2 + the authors' code) with
# and without SGS, then PSPNet-R50-D8 on Cityscapes (SemSeg's recipe) and
# SimpleBaseline-R50 on MPII (Pytorch-Pose-HG-3D's recipe): the baseline
# chain without SGS and the SGS chain with SGS in both stages.
#   python tools/pipeline.py configs/pipeline/paper_r50.py --launcher pytorch [--seeds 3]
# One more PSPNet column, SGS with diag_removal=True (the ImageNet "remove
# near values" NMI, Sec. 3.3; an open choice downstream, docs/paper.md): add
#   --cfg-options stages.pspnet_r50_sgs_diag_removal.enabled=True
# Finished stages are reused (same work_root): only that stage runs.
# Processes per stage = the recipes' GPU counts: 8 x 32 images (ImageNet),
# 8 x 2 (PSPNet), 1 x 32 (SimpleBaseline). Each stage is evaluated on its
# final checkpoint, and downstream stages start from the final ImageNet
# checkpoint (docs/paper.md).
title = 'SGS downstream study, ResNet-50 (paper recipes)'
work_root = 'work_dirs/paper_r50'
stages = [
    dict(name='pretrain_r50',
         config='configs/pretrain/resnet50_8xb32-paper120e_in1k.py',
         nproc=8,
         table=dict(model='ResNet-50', variant='Baseline')),
    dict(name='pretrain_r50_sgs',
         config='configs/pretrain/resnet50_8xb32-paper120e_in1k_sgs.py',
         nproc=8,
         table=dict(model='ResNet-50', variant='SGS')),
    dict(name='pspnet_r50',
         config='configs/pspnet/'
         'pspnet_r50-d8_8xb2-paper200e_cityscapes-713x713.py',
         init_from='pretrain_r50', nproc=8,
         table=dict(model='PSPNet-50', variant='Baseline')),
    dict(name='pspnet_r50_sgs',
         config='configs/pspnet/'
         'pspnet_r50-d8_8xb2-paper200e_cityscapes-713x713_sgs.py',
         init_from='pretrain_r50_sgs', nproc=8,
         table=dict(model='PSPNet-50', variant='SGS')),
    dict(name='simplebaseline_r50',
         config='configs/simplebaseline/'
         'td-hm_res50_1xb32-paper140e_mpii-256x256.py',
         init_from='pretrain_r50', nproc=1,
         table=dict(model='MSRA ResNet-50', variant='Baseline')),
    dict(name='simplebaseline_r50_sgs',
         config='configs/simplebaseline/'
         'td-hm_res50_1xb32-paper140e_mpii-256x256_sgs.py',
         init_from='pretrain_r50_sgs', nproc=1,
         table=dict(model='MSRA ResNet-50', variant='SGS')),
    # off unless enabled from the command line (see the top of this file)
    dict(name='pspnet_r50_sgs_diag_removal',
         config='configs/pspnet/'
         'pspnet_r50-d8_8xb2-paper200e_cityscapes-713x713_sgs.py',
         init_from='pretrain_r50_sgs', nproc=8,
         cfg_options={'custom_hooks.0.diag_removal': True},
         enabled=False,
         table=dict(model='PSPNet-50', variant='SGS diag_removal')),
]
