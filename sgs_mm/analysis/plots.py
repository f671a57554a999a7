"""Figures of the analysis tools (matplotlib, Agg canvas, PNG files).

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot): no
global backend switch, no GUI, safe to call from any process.
"""
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence

import numpy as np

from .history import GHistory, GRecord


def _figure(width: float, height: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout='constrained')


def _save(fig, out: str, dpi: int = 110) -> str:
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    fig.savefig(out, dpi=dpi, format='png', facecolor='white')
    return out


def _annotate(ax, m: np.ndarray, vmin: float, vmax: float, cmap) -> None:
    kh, kw = m.shape
    size = max(4.5, 11.5 - 0.9 * max(kh, kw))
    span = max(vmax - vmin, 1e-12)
    for i in range(kh):
        for j in range(kw):
            r, g, b, _ = cmap(float(np.clip((m[i, j] - vmin) / span, 0, 1)))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
            ax.text(j, i, f'{m[i, j]:.2f}', ha='center', va='center', fontsize=size,
                    color='white' if dark else 'black')


def heatmap_grid(row_names: Sequence[str], col_names: Sequence[str],
                 cell: Callable[[int, int], Optional[np.ndarray]], out: str,
                 title: str = '', annotate_max: int = 7, cbar_label='',
                 cmap: str = 'viridis', groups: Optional[Sequence[int]] = None) -> str:
    """Rows x columns of heatmaps, with a colour scale (and colorbar) per column group.

    Args:
        row_names / col_names: labels of the rows (left) and columns (top).
        cell: ``cell(row, col)`` gives the matrix of a panel, or None (blank).
        out: PNG path.
        annotate_max: write the values into panels whose kernel is at most
            this many taps on each side.
        cbar_label: colorbar label, or a list with one per group.
        groups: a group index per column; the columns of a group share one
            colour range (the range of their panels) and one colorbar.
            Default: all columns share one.

    Returns:
        ``out``.
    """
    import matplotlib
    cm = matplotlib.colormaps[cmap]
    nr, nc = len(row_names), len(col_names)
    mats = [[cell(r, c) for c in range(nc)] for r in range(nr)]
    groups = list(groups) if groups is not None else [0] * nc
    order = list(dict.fromkeys(groups))
    ranges = {}
    for gid in order:
        values = [mats[r][c] for r in range(nr) for c in range(nc)
                  if groups[c] == gid and mats[r][c] is not None]
        if values:
            lo, hi = min(float(m.min()) for m in values), max(float(m.max()) for m in values)
            ranges[gid] = (lo, hi if hi > lo else lo + 1e-6)
    if not ranges:
        raise ValueError('heatmap_grid: no matrix to draw')
    labels = (list(cbar_label) if isinstance(cbar_label, (list, tuple))
              else [cbar_label] * len(order))
    label_w = min(0.08 * max(len(n) for n in row_names), 2.6)
    fig = _figure(label_w + 1.9 * nc + 1.1, 1.9 * nr + (0.7 if title else 0.3))
    axes = np.atleast_2d(fig.subplots(nr, nc, squeeze=False))
    images = {}
    for r in range(nr):
        for c in range(nc):
            ax, m = axes[r, c], mats[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if m is None:
                ax.text(0.5, 0.5, 'n/a', ha='center', va='center', transform=ax.transAxes,
                        color='grey')
                for s in ax.spines.values():
                    s.set_visible(False)
            else:
                lo, hi = ranges[groups[c]]
                images[groups[c]] = ax.imshow(m, cmap=cm, vmin=lo, vmax=hi,
                                              interpolation='nearest')
                if max(m.shape) <= annotate_max:
                    _annotate(ax, m, lo, hi, cm)
            if r == 0:
                ax.set_title(col_names[c], fontsize=8)
            if c == 0:
                shape = f'\n{m.shape[0]}x{m.shape[1]}' if m is not None else ''
                ax.set_ylabel(f'{row_names[r]}{shape}', fontsize=8, rotation=0,
                              ha='right', va='center', labelpad=6)
    for gid, label in zip(order, labels):
        if gid not in images:
            continue
        cols = [c for c in range(nc) if groups[c] == gid]
        if len(order) == 1:
            cbar = fig.colorbar(images[gid], ax=axes, shrink=min(1.0, 0.35 + 0.25 * nr),
                                aspect=25)
        else:
            cbar = fig.colorbar(images[gid], ax=axes[:, cols].ravel().tolist(),
                                location='bottom', shrink=0.9, aspect=12 * len(cols),
                                pad=0.02)
        if label:
            cbar.set_label(label, fontsize=8)
        cbar.ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, out)


def plot_g_grid(history: GHistory, layers: Sequence[str], records: Sequence[GRecord],
                out: str, title: Optional[str] = None, annotate_max: int = 7) -> str:
    """G heatmaps: rows = ``layers``, columns = ``records`` (PAPER.md Fig. 4/5)."""
    if title is None:
        title = f'Spatial gradient scaling G ({history.describe() or "SGS"})\n{history.source}'
    return heatmap_grid(
        list(layers), [r.label for r in records],
        lambda i, j: records[j].layers.get(layers[i]), out, title=title,
        annotate_max=annotate_max, cbar_label='G (mean 1)')


def plot_matrix_columns(layers: Sequence[str], columns: Sequence[tuple], out: str,
                        title: str = '', cbar_label='', annotate_max: int = 7,
                        groups: Optional[Sequence[int]] = None) -> str:
    """Rows = layers, one column per ``(name, {layer: matrix})`` (PAPER.md Fig. 6).

    ``groups``/``cbar_label``: see :func:`heatmap_grid` (e.g. kernel magnitudes
    on one colour scale, G on another).
    """
    return heatmap_grid(
        list(layers), [name for name, _ in columns],
        lambda i, j: columns[j][1].get(layers[i]), out, title=title,
        annotate_max=annotate_max, cbar_label=cbar_label, groups=groups)


def _smooth(values: List[float], window: int) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or len(v) < window:
        return v
    kernel = np.ones(window) / window
    head = np.cumsum(v[:window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(v, kernel, mode='valid')])


def plot_runs(runs: Sequence, labels: Sequence[str], metric: Optional[str], out: str,
              loss_key: str = 'loss', title: str = '') -> str:
    """Training loss (left) and validation ``metric`` (right) of several runs.

    Args:
        runs: :class:`~sgs_mm.analysis.scalars.RunScalars`.
        metric: the validation key (None: loss only).
    """
    panels = 2 if metric else 1
    fig = _figure(5.0 * panels + 0.4, 3.8)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    colors = ['tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple']
    ax = axes[0]
    for i, (run, label) in enumerate(zip(runs, labels)):
        steps, values = run.series(loss_key, 'train')
        if not values:
            continue
        color = colors[i % len(colors)]
        window = max(1, len(values) // 40)
        if window > 1:
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
        ax.plot(steps, _smooth(values, window), color=color, linewidth=1.6,
                label=label + (f' (moving avg {window})' if window > 1 else ''))
    ax.set_xlabel('iteration')
    ax.set_ylabel(f'training {loss_key}')
    ax.set_title(f'training {loss_key}', fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if metric:
        ax = axes[1]
        for i, (run, label) in enumerate(zip(runs, labels)):
            steps, values = run.series(metric, 'val')
            if values:
                ax.plot(steps, values, marker='o', markersize=3.5, linewidth=1.6,
                        color=colors[i % len(colors)], label=label)
        unit = 'epoch' if all(r.by_epoch for r in runs if r.train) else 'step'
        ax.set_xlabel(unit)
        ax.set_ylabel(metric)
        ax.set_title(f'validation {metric}', fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, out)
