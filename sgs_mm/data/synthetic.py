"""Seeded, deterministic synthetic datasets in the REAL on-disk formats.

Three small datasets that the OpenMMLab libraries read with their own,
unmodified dataset classes:

* ``imagenet``   -- mmpretrain ``ImageNet`` / ``CustomDataset`` layout:
  ``train/<wnid>/<wnid>_<n>.JPEG``, ``val/ILSVRC2012_val_<n>.JPEG``,
  ``meta/train.txt`` / ``meta/val.txt`` (``<relative path> <label>``) and
  ``meta/classes.txt``. Classes are shape kinds (circle, square, triangle,
  cross) in random colours, sizes and positions on a noisy background.
* ``cityscapes`` -- mmseg ``CityscapesDataset`` layout:
  ``leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` and
  ``gtFine/{train,val}/<city>/..._gtFine_labelTrainIds.png`` (plus the
  ``_gtFine_labelIds.png`` the Cityscapes converter starts from). Street-like
  scenes of flat-coloured regions of six Cityscapes classes (road, sidewalk,
  building, vegetation, sky, car) with noise.
* ``mpii``       -- mmpose ``MpiiDataset`` layout: ``images/<9 digits>.jpg``,
  ``annotations/mpii_{train,val}.json`` (records with ``joints`` (16 x [x, y],
  1-based Matlab coordinates), ``joints_vis``, ``image``, ``scale``
  (person height / 200), ``center``) and ``annotations/mpii_gt_val.mat``
  (``headboxes_src`` 2x2xN, ``pos_gt_src`` 2x16xN, ``jnt_visible`` 16xN,
  ``dataset_joints``) as read by ``MpiiDataset(headbox_file=...)`` for
  ``MpiiPCKAccuracy``. One stick figure (16 joints, facing the camera) per
  image.

Everything is drawn with numpy + OpenCV from ``numpy.random.default_rng(seed)``:
the same seed gives byte-identical files.

The classification classes carry both a shape and a hue sector so that a
ResNet learns them within a CPU minute.

CLI::

    python -m sgs_mm.data.synthetic OUT_DIR [--seed 0] [--which imagenet cityscapes mpii]
"""
import argparse
import json
import os
import os.path as osp
from typing import Dict, Iterable, List, Optional, Sequence

import cv2
import numpy as np

from ..visualization.image_write import write_image

__all__ = [
    'SHAPE_CLASSES', 'CITYSCAPES_CLASSES_USED', 'MPII_JOINTS',
    'make_imagenet', 'make_cityscapes', 'make_mpii', 'make_all'
]

SHAPE_CLASSES = ('circle', 'square', 'triangle', 'cross')

# Cityscapes trainId -> (name, labelId, BGR colour)
CITYSCAPES_CLASSES_USED = {
    0: ('road', 7, (128, 64, 128)),
    1: ('sidewalk', 8, (232, 35, 244)),
    2: ('building', 11, (70, 70, 70)),
    8: ('vegetation', 21, (35, 142, 107)),
    10: ('sky', 23, (180, 130, 70)),
    13: ('car', 26, (142, 0, 0)),
}

MPII_JOINTS = ('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle',
               'pelvis', 'thorax', 'upper_neck', 'head_top', 'r_wrist',
               'r_elbow', 'r_shoulder', 'l_shoulder', 'l_elbow', 'l_wrist')
_MPII_LIMBS = ((0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8),
               (8, 9), (10, 11), (11, 12), (12, 7), (7, 13), (13, 14),
               (14, 15))
_JPEG = [int(cv2.IMWRITE_JPEG_QUALITY), 95]


def _background(rng: np.random.Generator, h: int, w: int,
                noise: float = 12.0) -> np.ndarray:
    """A smooth random colour gradient plus Gaussian noise (uint8 BGR)."""
    c0 = rng.uniform(0, 255, 3)
    c1 = rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, w)[None, :, None]
    if rng.random() < 0.5:
        t = np.linspace(0, 1, h)[:, None, None]
    img = c0 * (1 - t) + c1 * t
    img = np.broadcast_to(img, (h, w, 3)).astype(np.float64)
    img = img + rng.normal(0, noise, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _grey_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A low-saturation gradient background with noise."""
    img = _background(rng, h, w).astype(np.float64)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + 0.25 * (img - grey)
    return np.clip(img, 0, 255).astype(np.uint8)


def _distinct_colour(rng: np.random.Generator,
                     avoid: np.ndarray) -> tuple:
    """A random colour at least ~100 (L1) away from ``avoid``."""
    for _ in range(100):
        col = rng.uniform(0, 255, 3)
        if np.abs(col - avoid).sum() > 150:
            break
    return tuple(float(c) for c in col)


def _class_colour(rng: np.random.Generator, ci: int, n: int) -> tuple:
    """A saturated BGR colour whose hue lies in class ``ci``'s sector of the
    colour wheel (so that colour and shape both carry the class)."""
    hue = (ci + rng.uniform(-0.3, 0.3)) / n * 180.0 % 180.0  # OpenCV: 0..180
    hsv = np.uint8([[[hue, rng.uniform(170, 255), rng.uniform(150, 255)]]])
    return tuple(float(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _draw_shape(img: np.ndarray, rng: np.random.Generator, kind: str,
                col: Optional[tuple] = None) -> None:
    h, w = img.shape[:2]
    r = rng.uniform(0.18, 0.32) * min(h, w)
    cx = rng.uniform(r + 2, w - r - 2)
    cy = rng.uniform(r + 2, h - r - 2)
    if col is None:
        col = _distinct_colour(rng, img[int(cy), int(cx)].astype(np.float64))
    ang = rng.uniform(0, 2 * np.pi)
    if kind == 'circle':
        cv2.circle(img, (int(cx), int(cy)), int(r), col, -1, cv2.LINE_AA)
    elif kind == 'square':
        a = ang % (np.pi / 2)
        pts = [(cx + r * np.cos(a + k * np.pi / 2),
                cy + r * np.sin(a + k * np.pi / 2)) for k in range(4)]
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], col, cv2.LINE_AA)
    elif kind == 'triangle':
        pts = [(cx + r * np.cos(ang + k * 2 * np.pi / 3),
                cy + r * np.sin(ang + k * 2 * np.pi / 3)) for k in range(3)]
        cv2.fillPoly(img, [np.round(pts).astype(np.int32)], col, cv2.LINE_AA)
    elif kind == 'cross':
        t = max(2, int(r * 0.35))
        for a in (ang, ang + np.pi / 2):
            p0 = (int(cx - r * np.cos(a)), int(cy - r * np.sin(a)))
            p1 = (int(cx + r * np.cos(a)), int(cy + r * np.sin(a)))
            cv2.line(img, p0, p1, col, t, cv2.LINE_AA)
    else:
        raise ValueError(f'unknown shape {kind}')


def make_imagenet(root: str,
                  num_train_per_class: int = 200,
                  num_val_per_class: int = 50,
                  size: int = 72,
                  seed: int = 0,
                  classes: Sequence[str] = SHAPE_CLASSES) -> Dict[str, int]:
    """Write an ImageNet-style classification dataset of coloured shapes.

    Layout (as mmpretrain's ``ImageNet(data_root=root, split=...)`` reads
    it): ``train/<wnid>/<wnid>_<n>.JPEG``, flat ``val/`` and ``meta/*.txt``.

    Returns:
        dict: number of written train and val images.
    """
    rng = np.random.default_rng(seed)
    wnids = [f'n{9000000 + i:08d}' for i in range(len(classes))]
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    train_lines, val_lines = [], []
    for ci, (wnid, kind) in enumerate(zip(wnids, classes)):
        os.makedirs(osp.join(root, 'train', wnid), exist_ok=True)
        for n in range(num_train_per_class):
            img = _grey_background(rng, size, size)
            _draw_shape(img, rng, kind, _class_colour(rng, ci, len(classes)))
            rel = f'{wnid}/{wnid}_{n}.JPEG'
            write_image(osp.join(root, 'train', rel), img, _JPEG)
            train_lines.append(f'{rel} {ci}')
    os.makedirs(osp.join(root, 'val'), exist_ok=True)
    labels = np.repeat(np.arange(len(classes)), num_val_per_class)
    labels = labels[rng.permutation(len(labels))]
    for n, ci in enumerate(labels, start=1):
        img = _grey_background(rng, size, size)
        _draw_shape(img, rng, classes[ci],
                    _class_colour(rng, ci, len(classes)))
        name = f'ILSVRC2012_val_{n:08d}.JPEG'
        write_image(osp.join(root, 'val', name), img, _JPEG)
        val_lines.append(f'{name} {ci}')
    _write_lines(osp.join(root, 'meta', 'train.txt'), train_lines)
    _write_lines(osp.join(root, 'meta', 'val.txt'), val_lines)
    _write_lines(osp.join(root, 'meta', 'classes.txt'), list(classes))
    return dict(train=len(train_lines), val=len(val_lines))


def _write_lines(path: str, lines: Iterable[str]) -> None:
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def _street_scene(rng: np.random.Generator, h: int, w: int):
    """One street-like scene: (BGR image, trainId label map)."""
    lab = np.full((h, w), 255, np.uint8)
    horizon = int(h * rng.uniform(0.35, 0.55))
    lab[:horizon] = 10  # sky
    lab[horizon:] = 0  # road
    # sidewalks: wedge on each side below the horizon
    for side in (0, 1):
        if rng.random() < 0.8:
            wd = rng.uniform(0.1, 0.3) * w
            x0 = 0 if side == 0 else w
            x1 = wd if side == 0 else w - wd
            pts = np.array([[x0, horizon], [x0, h], [x1, h],
                            [x0 + (x1 - x0) * 0.2, horizon]], np.int32)
            cv2.fillPoly(lab, [pts], 1)
    # buildings and trees on the horizon
    x = 0
    while x < w:
        bw = int(rng.uniform(0.08, 0.25) * w)
        if rng.random() < 0.65:
            top = int(horizon * rng.uniform(0.05, 0.6))
            cv2.rectangle(lab, (x, top), (x + bw, horizon), 2, -1)
        elif rng.random() < 0.7:
            r = bw // 2 + 1
            cy = horizon - int(r * rng.uniform(0.3, 1.0))
            cv2.circle(lab, (x + r, cy), r, 8, -1)
            cv2.rectangle(lab, (x + r - 1, cy), (x + r + 1, horizon), 8, -1)
        x += bw + int(rng.uniform(0, 0.05) * w)
    # cars on the road
    for _ in range(int(rng.integers(1, 4))):
        cw = int(rng.uniform(0.12, 0.25) * w)
        ch = int(cw * rng.uniform(0.4, 0.6))
        cx = int(rng.uniform(0, w - cw))
        cy = int(rng.uniform(horizon, h - ch))
        cv2.rectangle(lab, (cx, cy + ch // 3), (cx + cw, cy + ch), 13, -1)
        cv2.rectangle(lab, (cx + cw // 5, cy), (cx + 4 * cw // 5,
                                                cy + ch // 3), 13, -1)
    img = np.zeros((h, w, 3), np.float64)
    for tid, (_, _, bgr) in CITYSCAPES_CLASSES_USED.items():
        jitter = rng.normal(0, 20, 3)
        img[lab == tid] = np.clip(np.array(bgr) + jitter, 0, 255)
    img += rng.normal(0, 10, img.shape)
    img = cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (3, 3), 0)
    return img, lab


def make_cityscapes(root: str,
                    num_train: int = 60,
                    num_val: int = 20,
                    width: int = 256,
                    height: int = 128,
                    seed: int = 0) -> Dict[str, int]:
    """Write Cityscapes-format street scenes (leftImg8bit + gtFine).

    ``gtFine/..._gtFine_labelTrainIds.png`` holds train ids (0..18, 255 =
    ignore) as produced by mmseg's ``tools/dataset_converters/cityscapes.py``;
    ``_gtFine_labelIds.png`` holds the original Cityscapes label ids.
    """
    rng = np.random.default_rng(seed)
    train_to_id = np.full(256, 0, np.uint8)
    for tid, (_, lid, _) in CITYSCAPES_CLASSES_USED.items():
        train_to_id[tid] = lid
    counts = {}
    for split, n, city in (('train', num_train, 'synthcity'),
                           ('val', num_val, 'synthval')):
        img_dir = osp.join(root, 'leftImg8bit', split, city)
        gt_dir = osp.join(root, 'gtFine', split, city)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(gt_dir, exist_ok=True)
        for i in range(n):
            img, lab = _street_scene(rng, height, width)
            stem = f'{city}_{i // 100:06d}_{i % 100:06d}'
            write_image(osp.join(img_dir, f'{stem}_leftImg8bit.png'), img)
            write_image(
                osp.join(gt_dir, f'{stem}_gtFine_labelTrainIds.png'), lab)
            write_image(
                osp.join(gt_dir, f'{stem}_gtFine_labelIds.png'),
                train_to_id[lab])
        counts[split] = n
    return counts


def _stick_figure(rng: np.random.Generator, size: int,
                  max_tilt: float = 40.0):
    """Joint coordinates (16, 2) in pixels (0-based) of one figure facing the
    camera (the person's right side is on the image left), leaning by up to
    ``max_tilt`` degrees, so that the mean pose is no good predictor."""
    hgt = rng.uniform(0.5, 0.7) * size  # head top to ankles
    cx = rng.uniform(0.4, 0.6) * size
    top = rng.uniform(0.05, 0.95 * size - hgt - 0.05 * size) + 0.05 * size
    u = hgt / 8.0  # body unit
    j = np.zeros((16, 2))
    j[9] = (cx + rng.normal(0, 0.2 * u), top)  # head top
    j[8] = (cx, top + 1.2 * u)  # upper neck
    j[7] = (cx, top + 1.6 * u)  # thorax
    j[6] = (cx + rng.normal(0, 0.2 * u), top + 4.0 * u)  # pelvis
    sh = rng.uniform(0.8, 1.1) * u
    j[12] = j[7] + (-sh, 0.2 * u)  # r_shoulder (image left)
    j[13] = j[7] + (sh, 0.2 * u)  # l_shoulder
    hip = rng.uniform(0.5, 0.7) * u
    j[2] = j[6] + (-hip, 0)
    j[3] = j[6] + (hip, 0)
    for s, (sho, elb, wri) in ((-1, (12, 11, 10)), (1, (13, 14, 15))):
        a1 = rng.uniform(-0.2, 1.3)  # angle from straight down, outwards
        a2 = a1 + rng.uniform(-0.6, 0.9)
        j[elb] = j[sho] + 1.5 * u * np.array([s * np.sin(a1), np.cos(a1)])
        j[wri] = j[elb] + 1.3 * u * np.array([s * np.sin(a2), np.cos(a2)])
    for s, (hp, kn, an) in ((-1, (2, 1, 0)), (1, (3, 4, 5))):
        a1 = rng.uniform(-0.1, 0.5)
        a2 = a1 + rng.uniform(-0.5, 0.2)
        j[kn] = j[hp] + 2.0 * u * np.array([s * np.sin(a1), np.cos(a1)])
        j[an] = j[kn] + 2.0 * u * np.array([s * np.sin(a2), np.cos(a2)])
    # lean the whole figure about its middle, then keep it (with its head
    # and line width) inside the image
    t = np.deg2rad(rng.uniform(-max_tilt, max_tilt))
    mid = (j.min(0) + j.max(0)) / 2
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    j = (j - mid) @ rot.T + mid
    margin = 0.8 * u + 2
    lo, hi = j.min(0), j.max(0)
    j += np.maximum(margin - lo, 0) - np.maximum(hi - (size - 1 - margin), 0)
    return j, u


def _draw_figure(img: np.ndarray, rng: np.random.Generator, j: np.ndarray,
                 u: float) -> np.ndarray:
    """Draw the figure; return its head box [[x1, y1], [x2, y2]]."""
    col = _distinct_colour(rng, img.reshape(-1, 3).mean(0).astype(float))
    thick = max(2, int(round(0.35 * u)))
    sc = 16  # sub-pixel precision for anti-aliased drawing
    for a, b in _MPII_LIMBS:
        pa = tuple(int(v) for v in np.round(j[a] * sc))
        pb = tuple(int(v) for v in np.round(j[b] * sc))
        cv2.line(img, pa, pb, col, thick, cv2.LINE_AA, shift=4)
    for k in range(16):
        pk = tuple(int(v) for v in np.round(j[k] * sc))
        cv2.circle(img, pk, int(thick * 0.9 * sc), col, -1, cv2.LINE_AA,
                   shift=4)
    head_c = (j[9] + j[8]) / 2
    r = np.linalg.norm(j[9] - j[8]) / 2
    cv2.circle(img, tuple(int(v) for v in np.round(head_c * sc)),
               int(r * sc), col, -1, cv2.LINE_AA, shift=4)
    return np.array([head_c - r, head_c + r])


def _fix_mat_header(path: str) -> None:
    """savemat stamps the creation time into the 116-byte text header;
    replace it with a fixed text so the file is byte-deterministic."""
    text = b'MATLAB 5.0 MAT-file, Platform: posix, Created by: ' \
        b'sgs_mm.data.synthetic'
    with open(path, 'r+b') as f:
        f.write(text.ljust(116, b' '))


def make_mpii(root: str,
              num_train: int = 400,
              num_val: int = 100,
              size: int = 128,
              seed: int = 0) -> Dict[str, int]:
    """Write an MPII-format single-person pose dataset of stick figures.

    ``annotations/mpii_{train,val}.json`` use MPII's conventions (1-based
    joint coordinates, ``scale`` = person box height / 200, ``center``), and
    ``annotations/mpii_gt_val.mat`` carries the val head boxes for PCKh.
    """
    from scipy.io import savemat
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    img_id = 100000000
    counts = {}
    for split, n in (('train', num_train), ('val', num_val)):
        records: List[dict] = []
        headboxes, joints_all, vis_all = [], [], []
        for _ in range(n):
            img = _background(rng, size, size)
            # a distractor blob so the figure is not the only structure
            cv2.circle(img, (int(rng.uniform(0, size)),
                             int(rng.uniform(0, size))),
                       int(rng.uniform(3, size / 10)),
                       _distinct_colour(rng, np.zeros(3)), -1)
            j, u = _stick_figure(rng, size)
            hb = _draw_figure(img, rng, j, u)
            name = f'{img_id:09d}.jpg'
            img_id += 1
            write_image(osp.join(root, 'images', name), img, _JPEG)
            j1 = j + 1.0  # MPII (Matlab) coordinates are 1-based
            # the person box: centre of the joints' extent, scale = its
            # larger side * 1.25 / 200 (MPII's scale is person height / 200)
            lo, hi = j1.min(0), j1.max(0)
            center = [float((lo[0] + hi[0]) / 2), float((lo[1] + hi[1]) / 2)]
            scale = float((hi - lo).max() * 1.25 / 200.0)
            records.append(
                dict(
                    joints_vis=[1] * 16,
                    joints=[[float(x), float(y)] for x, y in j1],
                    image=name,
                    scale=scale,
                    center=center))
            headboxes.append(hb + 1.0)
            joints_all.append(j1)
            vis_all.append(np.ones(16))
        with open(
                osp.join(root, 'annotations', f'mpii_{split}.json'), 'w') as f:
            json.dump(records, f)
        if split == 'val':
            mat_path = osp.join(root, 'annotations', 'mpii_gt_val.mat')
            savemat(
                mat_path,
                dict(
                    headboxes_src=np.transpose(np.array(headboxes), [1, 2, 0]),
                    pos_gt_src=np.transpose(np.array(joints_all), [2, 1, 0]),
                    jnt_visible=np.array(vis_all).T.astype(np.uint8),
                    dataset_joints=np.array([list(MPII_JOINTS)],
                                            dtype=object)))
            _fix_mat_header(mat_path)
        counts[split] = n
    return counts


def make_all(out_dir: str,
             seed: int = 0,
             which: Optional[Sequence[str]] = None,
             **sizes) -> Dict[str, Dict[str, int]]:
    """Write the selected datasets under ``out_dir/{imagenet,cityscapes,
    mpii}``; keyword ``sizes`` are forwarded as ``<dataset>_<arg>=...``."""
    makers = dict(imagenet=make_imagenet, cityscapes=make_cityscapes,
                  mpii=make_mpii)
    which = list(which or makers)
    out = {}
    for i, name in enumerate(which):
        kw = {k[len(name) + 1:]: v for k, v in sizes.items()
              if k.startswith(name + '_')}
        out[name] = makers[name](osp.join(out_dir, name), seed=seed + i,
                                 **kw)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description='Write seeded synthetic datasets in the real ImageNet, '
        'Cityscapes and MPII on-disk formats.')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--which', nargs='+', default=['imagenet', 'cityscapes', 'mpii'],
        choices=['imagenet', 'cityscapes', 'mpii'])
    args = parser.parse_args(argv)
    counts = make_all(args.out_dir, seed=args.seed, which=args.which)
    print(json.dumps(counts))


if __name__ == '__main__':
    main()
