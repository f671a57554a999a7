"""Figures of the analysis tools (matplotlib, Agg canvas, PNG files).

Figures are built on ``matplotlib.figure.Figure`` directly (no pyplot): no
global backend switch, no GUI, safe to call from any process.
"""
import os
import os.path as osp
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..atomic_io import atomic_write_with
from .history import GHistory, GRecord


def _figure(width: float, height: float, layout: str = 'constrained'):
    """A figure; ``layout='compressed'`` for grids of fixed-aspect panels (heatmaps)."""
    from matplotlib.figure import Figure
    return Figure(figsize=(width, height), layout=layout)


def overflow(fig) -> Tuple[float, float, float, float]:
    """How far (inches) the drawn artists reach past the left, bottom, right, top edges.

    All zero when everything fits on the canvas.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    fig.draw(canvas.get_renderer())  # runs the layout engine
    box = fig.get_tightbbox(canvas.get_renderer())
    w, h = fig.get_size_inches()
    return (max(0.0, -box.x0), max(0.0, -box.y0), max(0.0, box.x1 - w), max(0.0, box.y1 - h))


def _fit(fig, pad: float = 0.08, rounds: int = 3) -> None:
    """Grow the figure until no label is cut at an edge (long layer names).

    The layout engines under-reserve room for wide horizontal y-labels next to
    fixed-aspect panels; each round widens the canvas by the overflow.
    """
    for _ in range(rounds):
        left, bottom, right, top = overflow(fig)
        if max(left, bottom, right, top) <= 1e-3:
            return
        w, h = fig.get_size_inches()
        fig.set_size_inches(w + (left + right + 2 * pad if left or right else 0),
                            h + (bottom + top + 2 * pad if bottom or top else 0))


def _save(fig, out: str, dpi: int = 110) -> str:
    _fit(fig)
    folder = osp.dirname(osp.abspath(out))
    os.makedirs(folder, exist_ok=True)
    atomic_write_with(out, lambda f: fig.savefig(f, dpi=dpi, format='png', facecolor='white'))
    return out


def wrap_name(name: str, width: int = 32) -> str:
    """A dotted layer name broken after dots into lines of at most ``width`` characters.

    Lines break only after a ``.``; a single part longer than ``width`` stays whole.
    """
    if len(name) <= width:
        return name
    parts = name.split('.')
    lines, line = [], ''
    for i, part in enumerate(parts):
        piece = part + ('.' if i < len(parts) - 1 else '')
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ''
        line += piece
    lines.append(line)
    return '\n'.join(lines)


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
    wrapped = [wrap_name(n) for n in row_names]
    longest = max(len(line) for n in wrapped for line in n.split('\n'))
    label_w = 0.075 * longest + 0.2
    fig = _figure(label_w + 1.9 * nc + 1.1, 1.9 * nr + (0.7 if title else 0.3),
                  layout='compressed')
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
                ax.set_ylabel(f'{wrapped[r]}{shape}', fontsize=8, rotation=0,
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
                out: str, title: Optional[str] = None, annotate_max: int = 7,
                note: str = '') -> str:
    """G heatmaps: rows = ``layers``, columns = ``records`` (PAPER.md Fig. 4/5).

    ``note`` (e.g. which layers are left out) is added under the title.
    """
    if title is None:
        title = f'Spatial gradient scaling G ({history.describe() or "SGS"})\n{history.source}'
    if note:
        title = f'{title}\n{note}'
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


def _single_evaluations(ax, runs, labels, metric, colors, unit) -> None:
    """One bar per run, labelled with its value and when it was measured."""
    xs, heights, notes, cols = [], [], [], []
    for i, (run, label) in enumerate(zip(runs, labels)):
        steps, values = run.series(metric, 'val')
        if values:
            xs.append(label)
            heights.append(values[-1])
            notes.append(f'{values[-1]:.4g}\n({unit} {steps[-1]})')
            cols.append(colors[i % len(colors)])
    bars = ax.bar(xs, heights, color=cols, width=0.6)
    ax.bar_label(bars, labels=notes, fontsize=8, padding=2)
    top = max(max(heights), 0.0)
    ax.set_ylim(min(0.0, min(heights)) * 1.2, top * 1.25 if top > 0 else 1.0)
    ax.set_xlabel('run (one validation each)')
    ax.grid(alpha=0.3, axis='y')


def plot_runs(runs: Sequence, labels: Sequence[str], metric: Optional[str], out: str,
              loss_key: str = 'loss', title: str = '') -> str:
    """Training loss (left) and validation ``metric`` (right) of several runs.

    Both panels count in the same unit: iterations for the loss; for the
    validation, epochs when every run is epoch-based, else iterations. When no
    run was validated more than once, the validation panel is one bar per run
    (a lone point per run on a line plot says nothing).

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
        from .scalars import val_unit
        unit = val_unit(runs)
        counts = [len(run.series(metric, 'val')[1]) for run in runs]
        if max(counts) == 1:
            _single_evaluations(ax, runs, labels, metric, colors,
                                'epoch' if unit == 'epoch' else 'iter')
        else:
            for i, (run, label) in enumerate(zip(runs, labels)):
                steps, values = run.series(metric, 'val')
                if values:
                    ax.plot(steps, values, marker='o', markersize=3.5, linewidth=1.6,
                            color=colors[i % len(colors)], label=label)
            ax.set_xlabel(unit)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax.set_ylabel(metric)
        ax.set_title(f'validation {metric}', fontsize=10)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, out)
