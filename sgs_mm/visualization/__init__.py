from .g_grid import render_scaling_grid
from .image_write import check_local_image, write_image

__all__ = ['render_scaling_grid', 'check_local_image', 'write_image']
