"""Image writes that fail loudly: ``cv2.imwrite`` returns False instead of
raising (a full disk, a file-size limit, a missing folder), so every image
this project writes goes through :func:`write_image`, and images handed to an
mmengine visualizer are checked on disk with :func:`check_local_image`."""
import os
import os.path as osp
from typing import Sequence

import numpy as np


def write_image(path: str, image: np.ndarray, params: Sequence[int] = ()) -> None:
    """``cv2.imwrite(path, image, params)`` that raises when nothing was written.

    Args:
        path: destination file; its extension picks the format.
        image: the image (BGR or grayscale, as ``cv2.imwrite`` takes it).
        params: ``cv2.imwrite`` parameters (e.g. JPEG quality).

    Raises:
        OSError: ``cv2.imwrite`` reported a failure (the path is named).
    """
    import cv2
    if not cv2.imwrite(path, image, list(params)):
        raise OSError(f'cannot write the image {path} (cv2.imwrite failed: full disk, '
                      'file-size limit, missing folder or no permission)')


def check_local_image(visualizer, name: str, step: int, image: np.ndarray) -> None:
    """After ``visualizer.add_image(name, image, step)``: every mmengine
    ``LocalVisBackend`` of ``visualizer`` wrote the complete PNG (the backend
    ignores ``cv2.imwrite``'s return value).

    Args:
        visualizer: an mmengine ``Visualizer``.
        name, step: what ``add_image`` was given.
        image: the RGB image given to ``add_image``.

    Raises:
        OSError: a backend's PNG is missing or incomplete (its path named).
    """
    import cv2
    from mmengine.visualization import LocalVisBackend
    backends = [b for b in getattr(visualizer, '_vis_backends', {}).values()
                if isinstance(b, LocalVisBackend) and getattr(b, '_img_save_dir', None)]
    if not backends:
        return
    ok, encoded = cv2.imencode('.png', cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    for backend in backends:
        path = osp.join(backend._img_save_dir, f'{name}_{step}.png')
        size = os.path.getsize(path) if osp.isfile(path) else None
        if size is None or (ok and size != len(encoded)):
            raise OSError(f'{path} was not written' + (
                '' if size is None else f' completely ({size} of {len(encoded)} bytes)'))
