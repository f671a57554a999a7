# The `make demo` chain on the synthetic data (tools/demo.py generates it):
# ResNet-18 pretrain +-SGS -> {PSPNet-R18-D8, SimpleBaseline-R18}, the
# baseline chain without SGS and the SGS chain with SGS in both stages, as
# in the paper's Tables 7 and 8.
title = 'demo: ResNet-18 pretrain -> PSPNet-R18-D8 / SimpleBaseline-R18, +-SGS'
work_root = 'work_dirs/demo'
stages = [
    dict(name='pretrain_r18', config='configs/demo/resnet18_demo.py',
         table=dict(model='ResNet-18', variant='Baseline')),
    dict(name='pretrain_r18_sgs', config='configs/demo/resnet18_demo_sgs.py',
         table=dict(model='ResNet-18', variant='SGS')),
    dict(name='pspnet_r18', config='configs/demo/pspnet_r18-d8_demo.py',
         init_from='pretrain_r18',
         table=dict(model='PSPNet-18', variant='Baseline')),
    dict(name='pspnet_r18_sgs', config='configs/demo/pspnet_r18-d8_demo_sgs.py',
         init_from='pretrain_r18_sgs',
         table=dict(model='PSPNet-18', variant='SGS')),
    dict(name='simplebaseline_r18', config='configs/demo/td-hm_res18_demo.py',
         init_from='pretrain_r18',
         table=dict(model='MSRA ResNet-18', variant='Baseline')),
    dict(name='simplebaseline_r18_sgs',
         config='configs/demo/td-hm_res18_demo_sgs.py',
         init_from='pretrain_r18_sgs',
         table=dict(model='MSRA ResNet-18', variant='SGS')),
]
