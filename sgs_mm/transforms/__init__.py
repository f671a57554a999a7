"""Data transforms the paper recipes need that OpenMMLab does not ship.

One module per transform, each registered in its library's ``TRANSFORMS``
registry when imported; import the one a config uses (the module needs that
library only)::

    custom_imports = dict(imports=['sgs_mm.transforms.centred_pad'])

- ``centred_pad.CentredPad`` (mmseg): pad image and label centred up to a
  size, as SemSeg's ``Crop`` does before its random crop.
- ``clipped_normal_bbox_transform.ClippedNormalBBoxTransform`` (mmpose):
  box scale and rotation drawn from clipped normals, as Pytorch-Pose-HG-3D.
- ``clamp_bbox_scale.ClampBBoxScaleToImage`` (mmpose): box size at most the
  image's longer side, as Pytorch-Pose-HG-3D.
"""
