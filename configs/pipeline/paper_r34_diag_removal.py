# ./paper_r34.py plus one stage: PSPNet-R34-D8 with SGS and
# diag_removal=True (the ImageNet "remove near values" NMI, Sec. 3.3), an
# open choice downstream (docs/paper.md, "SGS settings per stage"). It shares
# paper_r34's work_root, so finished stages are skipped and only the new
# stage runs (from pretrain_r34_sgs's final checkpoint); the Table 7 style
# table then gets an "SGS diag_removal" column next to Baseline and SGS.
#   python tools/pipeline.py configs/pipeline/paper_r34_diag_removal.py --launcher pytorch [--seeds 3]
_base_ = ['./paper_r34.py']
stages = _base_.stages + [
    dict(name='pspnet_r34_sgs_diag_removal',
         config='configs/pspnet/'
         'pspnet_r34-d8_8xb2-paper200e_cityscapes-713x713_sgs.py',
         init_from='pretrain_r34_sgs', nproc=8,
         cfg_options={'custom_hooks.0.diag_removal': True},
         table=dict(model='PSPNet-34', variant='SGS diag_removal')),
]
