"""Head crop and resize of a whole series: one box for every slice, HU kept through the resize.

The head is found on the whole series at once: voxels above `HEAD_THRESHOLD_HU` (well above air,
below fat and soft tissue), a morphological opening that breaks thin bridges and removes thin
shells (the head rest, blankets, tubes), then the largest 3-D connected component. Its bounding
box, widened by a small margin and made square around its centre, is the crop of every slice.
The box may extend past the matrix: those pixels are air (`HU_MIN`). The search runs on a
subsampled copy (about 128 px across) because only a box is needed.

Resizing interpolates in float32 (bilinear with antialiasing, i.e. a triangle filter stretched by
the scale factor when shrinking: non-negative weights, so no overshoot) and rounds back to int16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import ndimage

from ichscan.dicom.hounsfield import HU_MAX, HU_MIN

HEAD_THRESHOLD_HU: Final[float] = -500.0
SEARCH_SIDE_PX: Final[int] = 128  # the head is searched on a copy subsampled to about this size
OPENING_ITERATIONS: Final[int] = 2
MARGIN_FRACTION: Final[float] = 0.02
RESIZE_CHUNK_SLICES: Final[int] = 32  # float32 copies are made this many slices at a time


@dataclass(frozen=True)
class CropBox:
    """Half-open box ``[y0, y1) × [x0, x1)`` in the original matrix's pixel coordinates.

    It may extend past the matrix (negative or beyond rows/columns): those pixels are air.
    """

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0


def full_box(rows: int, columns: int, *, square: bool) -> CropBox:
    """The whole matrix; with `square`, padded equally on both sides of its short axis."""
    if not square or rows == columns:
        return CropBox(0, rows, 0, columns)
    side = max(rows, columns)
    y0 = -((side - rows) // 2)
    x0 = -((side - columns) // 2)
    return CropBox(y0, y0 + side, x0, x0 + side)


def head_box(
    volume: NDArray[np.int16],
    *,
    threshold: float = HEAD_THRESHOLD_HU,
    margin_fraction: float = MARGIN_FRACTION,
) -> CropBox:
    """Square box around the head of a ``(z, H, W)`` HU volume (the whole matrix if no head).

    Voxels > `threshold` → opening (per slice, 3×3 cross, `OPENING_ITERATIONS`) → largest 3-D
    connected component → its in-plane bounding box + margin, made square around its centre.
    """
    _, rows, columns = volume.shape
    step = max(1, min(rows, columns) // SEARCH_SIDE_PX)
    body = volume[:, ::step, ::step] > threshold
    in_plane_cross = ndimage.generate_binary_structure(2, 1)[None]  # no bridging across slices
    body = ndimage.binary_opening(body, structure=in_plane_cross, iterations=OPENING_ITERATIONS)
    components, count = ndimage.label(body)
    if count == 0:
        return full_box(rows, columns, square=True)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    head = (components == int(np.argmax(sizes))).any(axis=0)
    row_hits = np.flatnonzero(head.any(axis=1))
    column_hits = np.flatnonzero(head.any(axis=0))
    # back to full resolution: subsampled index i covers original pixels [i*step, (i+1)*step)
    y0, y1 = int(row_hits[0]) * step, min(rows, (int(row_hits[-1]) + 1) * step)
    x0, x1 = int(column_hits[0]) * step, min(columns, (int(column_hits[-1]) + 1) * step)
    side = max(y1 - y0, x1 - x0)
    side += 2 * (step + math.ceil(margin_fraction * side))
    top = (y0 + y1 - side) // 2
    left = (x0 + x1 - side) // 2
    return CropBox(top, top + side, left, left + side)


def crop(volume: NDArray[np.int16], box: CropBox) -> NDArray[np.int16]:
    """The `box` region of a ``(z, H, W)`` volume; pixels outside the matrix are `HU_MIN` (air)."""
    z, rows, columns = volume.shape
    if box == CropBox(0, rows, 0, columns):
        return volume
    out = np.full((z, box.height, box.width), HU_MIN, dtype=np.int16)
    src_y0, src_y1 = max(box.y0, 0), min(box.y1, rows)
    src_x0, src_x1 = max(box.x0, 0), min(box.x1, columns)
    if src_y0 < src_y1 and src_x0 < src_x1:
        out[:, src_y0 - box.y0 : src_y1 - box.y0, src_x0 - box.x0 : src_x1 - box.x0] = volume[
            :, src_y0:src_y1, src_x0:src_x1
        ]
    return out


def resize_hounsfield(volume: NDArray[np.int16], height: int, width: int) -> NDArray[np.int16]:
    """Resize a ``(z, H, W)`` int16 HU volume to ``(z, height, width)``, keeping HU.

    Bilinear with antialiasing in float32 (torch), rounded to the nearest integer HU; the work is
    done `RESIZE_CHUNK_SLICES` slices at a time so memory stays bounded on long series.
    """
    z, rows, columns = volume.shape
    if (rows, columns) == (height, width):
        return volume
    out = np.empty((z, height, width), dtype=np.int16)
    for start in range(0, z, RESIZE_CHUNK_SLICES):
        chunk = torch.from_numpy(np.ascontiguousarray(volume[start : start + RESIZE_CHUNK_SLICES]))
        resized = F.interpolate(
            chunk.to(torch.float32)[None],  # (1, chunk, H, W): slices as channels of one image
            size=(height, width),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )[0]
        out[start : start + RESIZE_CHUNK_SLICES] = (
            resized.round_().clamp_(HU_MIN, HU_MAX).to(torch.int16).numpy()
        )
    return out
