"""Command line: write a backbone-only checkpoint in another stem key layout.

    python -m sgs_mm.checkpoint.convert_backbone SRC.pth DST.pth \
        [--to {sequential,convmodule,plain}] [--prefix backbone.]

Writes ``{'state_dict': {'backbone.*': ...}}`` (see
:mod:`sgs_mm.checkpoint.backbone_state` for the layouts). The library code is
kept out of this module so that ``python -m`` runs it without importing it
twice.
"""
import argparse
from collections import OrderedDict

from ..atomic_io import atomic_torch_save
from .backbone_state import convert_backbone_state, extract_backbone_state, stem_style


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description='Convert the backbone of an mmpretrain ResNet checkpoint '
        'to the stem key layout of mmseg (sequential) or mmpose/mmpretrain '
        '(convmodule).')
    parser.add_argument('src')
    parser.add_argument('dst')
    parser.add_argument(
        '--to', default='sequential',
        choices=['sequential', 'convmodule', 'plain'])
    parser.add_argument('--prefix', default='backbone.')
    args = parser.parse_args(argv)
    state = extract_backbone_state(args.src, args.prefix)
    out = convert_backbone_state(state, args.to)
    atomic_torch_save(
        dict(state_dict=OrderedDict(
            (args.prefix + k, v) for k, v in out.items())), args.dst)
    print(f'{len(out)} tensors ({stem_style(state)} -> {args.to}) '
          f'written to {args.dst}')


if __name__ == '__main__':
    main()
