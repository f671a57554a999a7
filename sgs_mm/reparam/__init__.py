"""Structural reparameterization beside SGS (torch only): train the convs
SGS scales as ACNet / RepVGG / DBB blocks (:func:`to_branches`), fuse them
back into the plain architecture (:func:`fuse_branches`)."""
from .block import BranchBlock
from .convert import fuse_branches, fused_state_dict, init_branches, to_branches
from .kinds import KINDS, LINEAR_KINDS, lemma1_branches

__all__ = ['to_branches', 'fuse_branches', 'fused_state_dict', 'init_branches', 'BranchBlock',
           'KINDS', 'LINEAR_KINDS', 'lemma1_branches']
