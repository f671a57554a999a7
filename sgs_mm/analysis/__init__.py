"""Analysis of SGS runs: G history, kernel magnitudes, training curves (PAPER.md A.6/A.7).

Readers (``history``, ``kernels``, ``scalars``) need no plotting library;
``plots`` needs matplotlib (``pip install sgs_mm[analysis]``). The command-line
tools are ``tools/analysis/{plot_sgs,kernel_magnitude,compare_runs}.py``.
"""
from .errors import AnalysisInputError
from .history import (HISTORY_FILE, LEGACY_HISTORY_FILE, GHistory, GHistoryWriter, GRecord,
                      find_history_file, load_g_history, read_history_raw)
from .kernels import centre_edge_corner, conv_weights, kernel_magnitude, magnitudes
from .scalars import RunScalars, final_summary, load_scalars, pick_metric
from .selection import evenly_spaced, first_middle_last, select_layers

__all__ = ['AnalysisInputError', 'GHistory', 'GHistoryWriter', 'GRecord', 'HISTORY_FILE',
           'LEGACY_HISTORY_FILE', 'find_history_file', 'load_g_history', 'read_history_raw',
           'kernel_magnitude', 'conv_weights', 'magnitudes', 'centre_edge_corner', 'RunScalars',
           'load_scalars', 'pick_metric', 'final_summary', 'select_layers', 'first_middle_last',
           'evenly_spaced']
