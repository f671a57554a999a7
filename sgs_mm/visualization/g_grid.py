"""Render a set of G matrices as one labelled RGB image (for visualizer backends)."""
import math
from typing import Dict, Optional

import numpy as np


def render_scaling_grid(scales: Dict[str, np.ndarray], cell: int = 96, cols: int = 6,
                        vmax: Optional[float] = None) -> np.ndarray:
    """One heatmap per layer (viridis, shared colour range), layer name below.

    Args:
        scales: G per layer name, each (kh, kw).
        cell: pixel size of one heatmap tile.
        cols: tiles per row.
        vmax: top of the colour range (default: the largest value).

    Returns:
        uint8 RGB image (H, W, 3).
    """
    import cv2
    names = list(scales)
    if not names:
        return np.zeros((cell, cell, 3), np.uint8)
    arrays = [np.asarray(scales[n], dtype=np.float64) for n in names]
    hi = float(vmax if vmax is not None else max(a.max() for a in arrays))
    lo = 0.0
    label_h = 28
    cols = min(cols, len(names))
    rows = math.ceil(len(names) / cols)
    canvas = np.full((rows * (cell + label_h), cols * cell, 3), 255, np.uint8)
    for i, (name, g) in enumerate(zip(names, arrays)):
        r, c = divmod(i, cols)
        norm = np.clip((g - lo) / max(hi - lo, 1e-12), 0, 1)
        tile = cv2.resize((norm * 255).astype(np.uint8), (cell - 4, cell - 4),
                          interpolation=cv2.INTER_NEAREST)
        tile = cv2.applyColorMap(tile, cv2.COLORMAP_VIRIDIS)[:, :, ::-1]
        y, x = r * (cell + label_h), c * cell
        canvas[y + 2:y + cell - 2, x + 2:x + cell - 2] = tile
        short = name if len(name) <= 18 else '..' + name[-16:]
        cv2.putText(canvas, short, (x + 2, y + cell + 11), cv2.FONT_HERSHEY_SIMPLEX, 0.3,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(canvas, f'c={g[g.shape[0] // 2, g.shape[1] // 2]:.2f}',
                    (x + 2, y + cell + 23), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return canvas
