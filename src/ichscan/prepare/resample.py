"""Physical resampling: every series to one pixel spacing in millimetres before crop and resize.

Heads scanned with different fields of view (0.4–0.5 mm pixels on a 512² matrix for most head CT,
up to ~1 mm for a wide field) then appear at the same scale: one cached pixel is `spacing` mm
before the crop, so the head's size in pixels depends only on the head (seed 004 and several
RSNA 2019 solutions resample to 1 mm).

In-plane: a ``(z, rows, columns)`` volume with pixel spacing ``(Δr, Δc)`` mm becomes
``(z, round(rows·Δr/s), round(columns·Δc/s))`` (at least 1) with `ichscan.prepare.crop`'s
resize: OpenCV area averaging on each axis that shrinks (`INTER_AREA`), bilinear when either
axis grows (`INTER_LINEAR`, pixel centres aligned, edges replicated), rounded to whole HU. The
new spacing is then exactly ``rows·Δr / new_rows`` (within half a pixel of `s` over the matrix).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from ichscan.prepare.crop import CropBox, crop_and_resize


class SpacingError(ValueError):
    """A series cannot be resampled (no usable pixel spacing); the message is the reason."""


def resampled_shape(rows: int, columns: int, pixel_spacing: tuple[float, float], spacing: float) -> tuple[int, int]:
    """``(round(rows·Δr/s), round(columns·Δc/s))``, each at least 1."""
    row_mm, column_mm = pixel_spacing
    if not (math.isfinite(row_mm) and math.isfinite(column_mm) and row_mm > 0 and column_mm > 0):
        raise SpacingError(f"no usable PixelSpacing ({row_mm}, {column_mm}) to resample to {spacing} mm")
    return max(1, round(rows * row_mm / spacing)), max(1, round(columns * column_mm / spacing))


def resample_in_plane(
    volume: NDArray[np.int16], pixel_spacing: tuple[float, float], spacing: float
) -> NDArray[np.int16]:
    """`volume` ``(z, rows, columns)`` at `pixel_spacing` (row, column) mm → `spacing` mm pixels."""
    _, rows, columns = volume.shape
    height, width = resampled_shape(rows, columns, pixel_spacing, spacing)
    if (height, width) == (rows, columns):
        return volume
    return crop_and_resize(volume, CropBox(0, rows, 0, columns), height, width)
