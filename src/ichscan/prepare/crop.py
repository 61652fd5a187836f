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
    body = open_in_plane(body, OPENING_ITERATIONS)  # per slice: no bridging across slices
    components, count = ndimage.label(body)
    if count == 0:
        return full_box(rows, columns, square=True)
    if count == 1:  # the usual case: no need to count voxels to find the largest
        largest = 1
    else:
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        largest = int(np.argmax(sizes))
    head = (components == largest).any(axis=0)
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


def open_in_plane(mask: NDArray[np.bool_], iterations: int) -> NDArray[np.bool_]:
    """Binary opening of each slice of a ``(z, H, W)`` mask with the 3×3 cross, `iterations` times.

    The same result as ``ndimage.binary_opening(mask, structure=cross[None], iterations=n)``
    (outside the matrix counts as background), with shifted slices instead of a generic
    structuring-element loop: about 20× faster on a series.
    """
    eroded = mask
    for _ in range(iterations):
        eroded = _erode_cross(eroded)
    dilated = eroded
    for _ in range(iterations):
        dilated = _dilate_cross(dilated)
    return dilated


def _erode_cross(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    out = np.zeros_like(mask)
    inner = out[:, 1:-1, 1:-1]
    np.logical_and(mask[:, 1:-1, 1:-1], mask[:, :-2, 1:-1], out=inner)
    inner &= mask[:, 2:, 1:-1]
    inner &= mask[:, 1:-1, :-2]
    inner &= mask[:, 1:-1, 2:]
    return out


def _dilate_cross(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    out = mask.copy()
    out[:, 1:, :] |= mask[:, :-1, :]
    out[:, :-1, :] |= mask[:, 1:, :]
    out[:, :, 1:] |= mask[:, :, :-1]
    out[:, :, :-1] |= mask[:, :, 1:]
    return out


def _overlap(box: CropBox, rows: int, columns: int) -> tuple[slice, slice, slice, slice] | None:
    """(source rows, source columns, target rows, target columns) of the box inside the matrix."""
    src_y0, src_y1 = max(box.y0, 0), min(box.y1, rows)
    src_x0, src_x1 = max(box.x0, 0), min(box.x1, columns)
    if src_y0 >= src_y1 or src_x0 >= src_x1:
        return None
    return (
        slice(src_y0, src_y1),
        slice(src_x0, src_x1),
        slice(src_y0 - box.y0, src_y1 - box.y0),
        slice(src_x0 - box.x0, src_x1 - box.x0),
    )


def crop(volume: NDArray[np.int16], box: CropBox) -> NDArray[np.int16]:
    """The `box` region of a ``(z, H, W)`` volume; pixels outside the matrix are `HU_MIN` (air)."""
    z, rows, columns = volume.shape
    if box == CropBox(0, rows, 0, columns):
        return volume
    out = np.full((z, box.height, box.width), HU_MIN, dtype=np.int16)
    overlap = _overlap(box, rows, columns)
    if overlap is not None:
        src_rows, src_columns, dst_rows, dst_columns = overlap
        out[:, dst_rows, dst_columns] = volume[:, src_rows, src_columns]
    return out


def resize_hounsfield(volume: NDArray[np.int16], height: int, width: int) -> NDArray[np.int16]:
    """Resize a ``(z, H, W)`` int16 HU volume to ``(z, height, width)``, keeping HU.

    Bilinear with antialiasing in float32 (torch), rounded to the nearest integer HU; the work is
    done `RESIZE_CHUNK_SLICES` slices at a time so memory stays bounded on long series.
    """
    _, rows, columns = volume.shape
    return crop_and_resize(volume, CropBox(0, rows, 0, columns), height, width)


def crop_and_resize(
    volume: NDArray[np.int16], box: CropBox, height: int, width: int
) -> NDArray[np.int16]:
    """`resize_hounsfield(crop(volume, box), height, width)` without the int16 cropped copy.

    Each chunk of `RESIZE_CHUNK_SLICES` slices is cut out of `volume` straight into one reused
    float32 buffer (air outside the matrix), resized as a batch of one-channel images (torch's
    antialiased kernel is faster on ``(z, 1, H, W)`` than on ``(1, z, H, W)``; every slice is
    still resized on its own), rounded and clipped into the int16 output.
    """
    z, rows, columns = volume.shape
    if (box.height, box.width) == (height, width):
        return crop(volume, box)
    out = np.empty((z, height, width), dtype=np.int16)
    if z == 0:
        return out
    overlap = _overlap(box, rows, columns)
    covers = overlap is not None and box.y0 >= 0 and box.x0 >= 0 and box.y1 <= rows and box.x1 <= columns
    buffer = torch.empty((min(z, RESIZE_CHUNK_SLICES), 1, box.height, box.width), dtype=torch.float32)
    for start in range(0, z, RESIZE_CHUNK_SLICES):
        stop = min(z, start + RESIZE_CHUNK_SLICES)
        chunk = buffer[: stop - start]
        target = chunk.numpy()[:, 0]
        if not covers:
            target.fill(HU_MIN)
        if overlap is not None:
            src_rows, src_columns, dst_rows, dst_columns = overlap
            np.copyto(target[:, dst_rows, dst_columns], volume[start:stop, src_rows, src_columns])
        resized = F.interpolate(
            chunk, size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )[:, 0]
        # rounded values are whole numbers: the int16 copy is exact
        torch.from_numpy(out[start:stop]).copy_(resized.round_().clamp_(HU_MIN, HU_MAX))
    return out
