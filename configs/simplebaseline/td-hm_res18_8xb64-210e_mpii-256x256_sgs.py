# SimpleBaseline ResNet-18 MPII, OpenMMLab's standard mmpose recipe with SGS:
# exactly ./td-hm_res18_8xb64-210e_mpii-256x256.py plus the SGS hook,
# fine-tuned from the SGS-pretrained ResNet-18 (the paper's SGS chain, A.4).
# SGS settings: the paper gives none for the downstream tasks and the
# authors' code (Ascend-Research/Reparameterization) has no pose code, so the
# ImageNet ones (Sec. 4.2) are kept: k=5, refresh every 5 epochs from 2
# batches after a 1-epoch warm-up. diag_removal=False: the paper removes near
# values "on ImageNet" only (Sec. 3.3); only the authors' ImageNet yaml sets
# sgs_diagonal_removal.
# SGS is custom_hooks[0]; the baseline's hooks (mmpose's SyncBuffersHook)
# follow unchanged.
# Switch off: --cfg-options custom_hooks.0.enabled=False.
_base_ = ['./td-hm_res18_8xb64-210e_mpii-256x256.py']
model = dict(
    backbone=dict(
        init_cfg=dict(
            checkpoint='work_dirs/resnet18_8xb32-paper120e_in1k_sgs/'
            'epoch_120.pth')))
custom_hooks = [
    dict(type='SpatialGradScalingHook', method='nmi', k=5, interval=5,
         warmup=1, unit='epoch', num_batches=2, diag_removal=False,
         mode='grad', enabled=True),
] + _base_.custom_hooks  # mmpose's SyncBuffersHook
