"""Evaluation metrics the paper recipes need that OpenMMLab does not ship.

One module per metric, registered in its library's ``METRICS`` registry when
imported (``custom_imports = dict(imports=['sgs_mm.evaluation.mpii_pckh_means'])``).

- ``mpii_pckh_means.MpiiPCKhMeans`` (mmpose): MPII PCKh@0.5 as both the
  joint-count-weighted mean (mmpose, MPII benchmark) and the plain mean of the
  per-joint values (the paper's ``eval_PCKh.py``).
"""
