"""Arrays on the cache's grid (heatmaps, masks, HU) → a NIfTI aligned with the input volume.

A cached slice is the crop box ``[y0, y1) × [x0, x1)`` of the source matrix (the slices table's
``crop_*`` columns; the box may reach past the matrix), resized to ``height × width``; with
``prepare --spacing`` the source matrix is the resampled one. Going back: each slice is resized
to the box (bilinear, OpenCV, pixel centres aligned), the part of the box inside the matrix is
kept and the rest of the matrix is `fill`, then (after a resampling) the matrix is resized to
the volume's own rows × columns, and `ichscan.nifti.volume.from_axial` puts it on the stored
(i, j, k) grid, so the written file shares the input's affine voxel for voxel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from ichscan.nifti.volume import from_axial, read_geometry


def to_source_matrix(
    values: NDArray[np.floating],
    box: Sequence[int],
    matrix: tuple[int, int],
    source: tuple[int, int] | None = None,
    *,
    fill: float = 0.0,
) -> NDArray[np.float32]:
    """``(z, height, width)`` cache-grid `values` → ``(z, rows, columns)`` on the source matrix.

    `box` = (y0, y1, x0, x1) in `matrix` (rows, columns) coordinates; `source` the volume's own
    (rows, columns) when `matrix` is a resampled grid (None: the same).
    """
    y0, y1, x0, x1 = (int(v) for v in box)
    rows, columns = matrix
    depth = values.shape[0]
    out = np.full((depth, rows, columns), fill, dtype=np.float32)
    top, bottom, left, right = max(y0, 0), min(y1, rows), max(x0, 0), min(x1, columns)
    for z in range(depth):
        plane = np.ascontiguousarray(values[z], dtype=np.float32)
        if plane.shape != (y1 - y0, x1 - x0):
            plane = cv2.resize(plane, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        if top < bottom and left < right:
            out[z, top:bottom, left:right] = plane[top - y0 : bottom - y0, left - x0 : right - x0]
    if source is not None and tuple(source) != (rows, columns):
        out = np.stack([cv2.resize(p, (source[1], source[0]), interpolation=cv2.INTER_LINEAR) for p in out])
    return out


def write_aligned(
    values: NDArray[np.floating], reference: str | os.PathLike[str], path: str | os.PathLike[str]
) -> None:
    """Write ``(z, rows, columns)`` `values` (the reference's axial orientation) as a float32 NIfTI
    with the reference volume's affine and grid; atomically."""
    import nibabel as nib

    from ichscan.files import atomic_path

    geometry = read_geometry(reference)
    expected = (geometry.depth, geometry.rows, geometry.columns)
    if values.shape != expected:
        raise ValueError(f"values {values.shape} do not match {reference}'s slices {expected}")
    stored = from_axial(np.asarray(values, dtype=np.float32), geometry.affine)
    image = nib.Nifti1Image(np.ascontiguousarray(stored), geometry.affine)
    image.set_qform(geometry.affine, code=1)
    image.set_sform(geometry.affine, code=1)
    suffix = ".nii.gz" if str(path).lower().endswith(".gz") else ".nii"
    with atomic_path(path) as tmp:
        named = tmp.with_name(tmp.name + suffix)  # nibabel picks the format from the name
        image.to_filename(named)
        os.replace(named, tmp)
