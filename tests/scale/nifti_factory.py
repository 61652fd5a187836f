"""NIfTI volumes the tests write from phantom DICOM series (nibabel), with known geometry."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom

from ichscan.dicom import to_hounsfield

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def dicom_series(manifest: pd.DataFrame, series_uid: str) -> tuple[np.ndarray, np.ndarray]:
    """HU ``(z, rows, columns)`` in anatomical order and the RAS voxel→world affine of the array
    ``data[i=column, j=row, k=z]`` built from the DICOM geometry (ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing)."""
    rows = manifest[manifest["series_instance_uid"] == series_uid].sort_values("slice_index")
    datasets = [pydicom.dcmread(path) for path in rows["path"]]
    hu = np.stack([to_hounsfield(ds) for ds in datasets])
    first, last = datasets[0], datasets[-1]
    cosines = np.asarray(first.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(v) for v in first.PixelSpacing)
    origin = np.asarray(first.ImagePositionPatient, dtype=float)
    step = (np.asarray(last.ImagePositionPatient, dtype=float) - origin) / max(1, len(datasets) - 1)
    lps = np.eye(4)
    lps[:3, 0] = cosines[:3] * column_spacing
    lps[:3, 1] = cosines[3:] * row_spacing
    lps[:3, 2] = step
    lps[:3, 3] = origin
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    return hu, affine


def flipped(data: np.ndarray, affine: np.ndarray, flip: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """`data` with the asked axes reversed and the affine that keeps every voxel where it was
    (column negated, origin moved to the old last voxel). By hand: nibabel's ``slicer[::-1]``
    flips the data but leaves the origin where it was."""
    affine = affine.copy()
    for axis, reverse in enumerate(flip):
        if reverse:
            data = np.flip(data, axis)
            affine[:3, 3] += affine[:3, axis] * (data.shape[axis] - 1)
            affine[:3, axis] *= -1
    return np.ascontiguousarray(data), affine


def write_volume(
    path: Path,
    hu: np.ndarray,
    affine: np.ndarray,
    *,
    flip: tuple[bool, bool, bool] = (False, False, False),
    rotate_degrees: float = 0.0,
    slope: float = 1.0,
    intercept: float = 0.0,
    dtype: type = np.int16,
) -> Path:
    """Write HU ``(z, rows, columns)`` as NIfTI: stored = (HU − intercept) / slope in `dtype`,
    axes flipped as asked (the affine follows, so the anatomy is unchanged), the world rotated by
    `rotate_degrees` about the superior axis (an oblique affine over the same voxels)."""
    data = hu.transpose(2, 1, 0).astype(np.float64)
    stored = np.round((data - intercept) / slope).astype(dtype)
    stored, affine = flipped(stored, affine, flip)
    image = nib.Nifti1Image(stored, affine)
    if rotate_degrees:
        angle = np.deg2rad(rotate_degrees)
        rotation = np.eye(4)
        rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        image = nib.Nifti1Image(np.asanyarray(image.dataobj), rotation @ image.affine)
    image = nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine)
    image.header.set_slope_inter(slope, intercept)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.to_filename(path)
    return path
