"""Filters and colour conversions shared by data, losses, metrics and models."""

from fusionlib.ops.colour import rgb_to_gray, rgb_to_ycbcr, ycbcr_to_rgb
from fusionlib.ops.filters import laplacian, sobel_l1, sobel_xy

__all__ = ["rgb_to_gray", "rgb_to_ycbcr", "ycbcr_to_rgb", "laplacian", "sobel_l1", "sobel_xy"]
