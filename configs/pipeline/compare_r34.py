# The paper's comparison for ResNet-34 (Table 2 and Tables 7-8): ImageNet
# pretraining plain / SGS / ACB / DBB (RepVGG optional), each followed by the
# downstream fine-tunes, PSPNet-R34-D8 on Cityscapes and SimpleBaseline-R34 on
# MPII, all with the paper's recipes.
#   python tools/pipeline.py configs/pipeline/compare_r34.py --launcher pytorch [--seeds 3]
# RepVGG (pretrain and both fine-tunes) is off; add it with
#   --cfg-options stages.pretrain_r34_repvgg.enabled=True
# The plain and SGS stages are those of paper_r34.py, in the same work_root:
# stages finished there are reused. An arm is data: `reparam=<kind>` on the
# plain pretrain config trains its backbone with that block
# (ReparamImageClassifier) and hands the fused plain ResNet to the fine-tunes,
# which are the plain recipes (no blocks downstream, as for a plain backbone).
# DyRep (a search over DBB blocks) is not an arm.
_base_ = ['./paper_r34.py']
title = 'SGS vs structural reparameterization, ResNet-34 (paper recipes)'
stages = _base_.stages + [
    dict(name=f'{task}_r34_{kind}', config=config, nproc=nproc,
         **(dict(reparam=kind) if task == 'pretrain' else
            dict(init_from=f'pretrain_r34_{kind}')),
         **(dict(enabled=False) if kind == 'repvgg' and task == 'pretrain'
            else {}),
         table=dict(model=model, variant=variant))
    for kind, variant in (('acb', 'ACB'), ('dbb', 'DBB'), ('repvgg', 'RepVGG'))
    for task, config, nproc, model in (
        ('pretrain', 'configs/pretrain/resnet34_8xb32-paper120e_in1k.py', 8,
         'ResNet-34'),
        ('pspnet', 'configs/pspnet/'
         'pspnet_r34-d8_8xb2-paper200e_cityscapes-713x713.py', 8,
         'PSPNet-34'),
        ('simplebaseline', 'configs/simplebaseline/'
         'td-hm_res34_1xb32-paper140e_mpii-256x256.py', 1,
         'MSRA ResNet-34'))
]
