from .g_grid import render_scaling_grid

__all__ = ['render_scaling_grid']
