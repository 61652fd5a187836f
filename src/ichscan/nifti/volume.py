"""One NIfTI volume → the geometry of its slices and its Hounsfield units, oriented like DICOM.

A NIfTI file stores an array ``data[i, j, k]`` and an affine from voxel indices to RAS+ world
millimetres (x to the patient's Right, y Anterior, z Superior). Slices are read in the patient
orientation of a standard axial DICOM series, so that a NIfTI volume and the DICOM series it was
converted from give the same cache:

- the array is reoriented (`nibabel.orientations`: `io_orientation` picks, for each array axis, the
  world axis it is closest to, so an oblique affine maps to the nearest standard orientation) to
  the axis codes ``("L", "P", "S")``: i runs to the patient's Left, j Posterior, k Superior;
- slice z = k (ascending z = feet to head, the manifest's anatomical order), pixel row r = j (top of
  the image anterior), column c = i (image right = patient left, the radiological convention):
  ``volume[z, r, c] = reoriented[c, r, z]``.

Hounsfield units: the stored values times ``scl_slope`` plus ``scl_inter`` (none when the header
says unscaled, as nibabel reads it), rounded to whole HU and clipped to [`HU_MIN`, `HU_MAX`] like
the DICOM path (scanner padding becomes air); NaN voxels become air. Spacing: the voxel sizes of
the affine's columns, reoriented with the array. Position of slice z: its first voxel's centre,
in DICOM's LPS world, projected on the slice normal (row direction × column direction) as
`ichscan.dicom.order` does for ImagePositionPatient.

Header limits: 3-D volumes (or 4-D with one time point) of at most `MAX_SIDE` voxels a side and
`MAX_VOXELS` in all, and never more data than the file can hold (an uncompressed file must be at
least as long as the header claims; a gzip file can inflate at most `MAX_GZIP_RATIO` times), so a
corrupt header never makes the reader allocate what it merely claims.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from ichscan.dicom.hounsfield import HU_MAX, HU_MIN

NIFTI_SUFFIXES: Final[tuple[str, ...]] = (".nii", ".nii.gz")
AXIAL_CODES: Final[tuple[str, str, str]] = ("L", "P", "S")  # array axes (column, row, slice)
MAX_SIDE: Final[int] = 4096
MAX_VOXELS: Final[int] = 1 << 28  # 256 Mi voxels: 512 MiB as int16
MAX_GZIP_RATIO: Final[int] = 1100  # deflate cannot inflate more than ~1032×
HOUNSFIELD_CHUNK_SLICES: Final[int] = 16
_RAS_TO_LPS: Final[NDArray[np.float64]] = np.diag([-1.0, -1.0, 1.0])


class NiftiError(ValueError):
    """A NIfTI file that cannot be used; the message is the one-line reason."""


def is_nifti(path: str | os.PathLike[str]) -> bool:
    """True for names ending in .nii or .nii.gz (any case)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def volume_stem(path: str | os.PathLike[str]) -> str:
    """The file name without .nii / .nii.gz."""
    name = Path(path).name
    for suffix in sorted(NIFTI_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


@dataclass(frozen=True)
class NiftiGeometry:
    """Where the slices of a volume are, in the DICOM-like orientation of the module docstring."""

    depth: int  # slices (z)
    rows: int
    columns: int
    pixel_spacing_row: float  # mm between rows
    pixel_spacing_col: float  # mm between columns
    slice_spacing: float  # mm between slice centres along the k axis
    positions: NDArray[np.float64]  # (depth,) mm along the slice normal, ascending
    slope: float
    intercept: float
    bits: int  # bits of the stored type
    signed: bool
    orientation: NDArray[np.float64]  # nibabel ornt: original array axes → ("L", "P", "S")
    shape: tuple[int, int, int]  # the stored array's shape (3-D)
    affine: NDArray[np.float64]  # the stored array's affine (RAS+)


def _load(path: str | os.PathLike[str]) -> Any:
    import nibabel as nib

    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many kinds for a file that is not NIfTI
        raise NiftiError(f"not a readable NIfTI file ({_first_line(error)})") from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise NiftiError(f"not a NIfTI-1/2 image ({type(image).__name__})")
    return image


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _checked_shape(image: Any, path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """The 3-D shape, after the header limits of the module docstring."""
    shape = tuple(int(side) for side in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise NiftiError(f"a 3-D volume is needed, the header says shape {shape}")
    if min(shape) < 1 or max(shape) > MAX_SIDE:
        raise NiftiError(f"shape {shape} outside 1…{MAX_SIDE} voxels a side")
    voxels = shape[0] * shape[1] * shape[2]
    if voxels > MAX_VOXELS:
        raise NiftiError(f"shape {shape}: {voxels:,} voxels, more than the {MAX_VOXELS:,} allowed")
    claimed = voxels * np.dtype(image.get_data_dtype()).itemsize
    size = os.path.getsize(path)
    if str(path).lower().endswith(".gz"):
        if claimed > MAX_GZIP_RATIO * size:
            raise NiftiError(f"header claims {claimed:,} bytes of voxels, more than a {size:,}-byte gzip file can hold")
    else:
        needed = int(image.header.get("vox_offset", 0)) + claimed
        if size < needed:
            raise NiftiError(f"truncated: header claims {needed:,} bytes, the file has {size:,}")
    return shape  # type: ignore[return-value]


def geometry_of(image: Any, shape: tuple[int, int, int]) -> NiftiGeometry:
    """The slice geometry of a loaded image (see the module docstring)."""
    from nibabel import orientations

    affine = np.asarray(image.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise NiftiError("the affine is singular or not finite")
    ornt = orientations.ornt_transform(
        orientations.io_orientation(affine), orientations.axcodes2ornt(AXIAL_CODES)
    )
    oriented = affine @ orientations.inv_ornt_aff(ornt, shape)
    lps = _RAS_TO_LPS @ oriented[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)  # mm per step along the reoriented i, j, k
    row_cosine = lps[:, 0] / spacing[0]  # along a row: column index c = i
    column_cosine = lps[:, 1] / spacing[1]  # down a column: row index r = j
    normal = np.cross(row_cosine, column_cosine)
    origin = _RAS_TO_LPS @ oriented[:3, 3]
    reoriented_shape = [0, 0, 0]  # ornt[original axis] = (reoriented axis, flip)
    for original_axis, (target_axis, _) in enumerate(ornt):
        reoriented_shape[int(target_axis)] = shape[original_axis]
    columns, rows, depth = reoriented_shape
    positions = (origin + np.outer(np.arange(depth), lps[:, 2])) @ normal
    # nibabel moves scl_slope/scl_inter from the header into the array proxy when it loads a file
    slope = getattr(image.dataobj, "slope", None)
    intercept = getattr(image.dataobj, "inter", None)
    if slope is None:
        slope, intercept = image.header.get_slope_inter()
    dtype = np.dtype(image.get_data_dtype())
    return NiftiGeometry(
        depth=depth,
        rows=rows,
        columns=columns,
        pixel_spacing_row=float(spacing[1]),
        pixel_spacing_col=float(spacing[0]),
        slice_spacing=float(spacing[2]),
        positions=positions,
        slope=1.0 if slope is None else float(slope),
        intercept=0.0 if intercept is None else float(intercept),
        bits=dtype.itemsize * 8,
        signed=dtype.kind in "if",
        orientation=ornt,
        shape=shape,
        affine=affine,
    )


def read_geometry(path: str | os.PathLike[str]) -> NiftiGeometry:
    """The header of `path` (voxels not read); NiftiError with the reason when unusable."""
    image = _load(path)
    return geometry_of(image, _checked_shape(image, path))


def to_axial(data: NDArray[Any], orientation: NDArray[np.float64]) -> NDArray[Any]:
    """A stored ``(i, j, k)`` array → ``(z, rows, columns)`` in the module's orientation (a view)."""
    from nibabel import orientations

    return orientations.apply_orientation(data, orientation).transpose(2, 1, 0)


def from_axial(volume: NDArray[Any], affine: NDArray[np.float64]) -> NDArray[Any]:
    """The inverse of `to_axial`: ``(z, rows, columns)`` → the stored array's ``(i, j, k)`` order,
    for the image whose `affine` it came from (e.g. to write a heatmap aligned with its input)."""
    from nibabel import orientations

    back = orientations.ornt_transform(orientations.axcodes2ornt(AXIAL_CODES), orientations.io_orientation(affine))
    return orientations.apply_orientation(volume.transpose(2, 1, 0), back)


def read_hounsfield(path: str | os.PathLike[str]) -> tuple[NDArray[np.int16], NiftiGeometry]:
    """The whole volume in int16 HU ``(z, rows, columns)`` (module orientation) and its geometry.

    One read of the file; the scaling runs `HOUNSFIELD_CHUNK_SLICES` stored planes at a time so
    the float temporaries stay small.
    """
    image = _load(path)
    shape = _checked_shape(image, path)
    geometry = geometry_of(image, shape)
    try:
        stored = np.asanyarray(image.dataobj.get_unscaled()).reshape(shape)
    except Exception as error:  # truncated gzip, short file, unsupported data type
        raise NiftiError(f"cannot read the voxels ({_first_line(error)})") from error
    hounsfield = np.empty(shape, dtype=np.int16)
    for start in range(0, shape[2], HOUNSFIELD_CHUNK_SLICES):
        block = stored[:, :, start : start + HOUNSFIELD_CHUNK_SLICES].astype(np.float64)
        block *= geometry.slope
        block += geometry.intercept
        np.rint(block, out=block)
        block[~np.isfinite(block)] = HU_MIN
        np.clip(block, HU_MIN, HU_MAX, out=block)
        hounsfield[:, :, start : start + HOUNSFIELD_CHUNK_SLICES] = block
    del stored
    return np.ascontiguousarray(to_axial(hounsfield, geometry.orientation)), geometry


def read_labels(path: str | os.PathLike[str], geometry: NiftiGeometry) -> NDArray[np.uint8]:
    """A label volume (same grid as the image it belongs to) as integers ``(z, rows, columns)``.

    Values must be whole numbers 0…255 (0 = background); ValueError names the file otherwise.
    """
    image = _load(path)
    shape = _checked_shape(image, path)
    if shape != geometry.shape or not np.allclose(image.affine, geometry.affine, atol=1e-3):
        raise NiftiError(f"mask grid {shape} does not match its volume's {geometry.shape} (shape or affine)")
    try:
        values = np.asanyarray(image.dataobj).reshape(shape)
    except Exception as error:
        raise NiftiError(f"cannot read the voxels ({_first_line(error)})") from error
    if values.size and (np.nanmin(values) < 0 or np.nanmax(values) > 255 or not np.all(values == np.round(values))):
        raise NiftiError("mask values must be whole numbers 0…255")
    return np.ascontiguousarray(to_axial(values.astype(np.uint8), geometry.orientation))


def read_series_volume(paths: Sequence[str]) -> tuple[NDArray[np.int16] | None, list[tuple[str, str]]]:
    """`prepare`'s reader for a NIfTI series: the manifest rows of one volume, in slice order.

    The volume is read once. Returns ``(volume, [])`` or ``(None, [(path, reason)])`` when the
    file is unusable or the rows are not the whole volume (a NIfTI series is prepared whole).
    """
    path = paths[0]
    if any(other != path for other in paths):
        return None, [(path, "a NIfTI series must come from one file")]
    try:
        volume, _ = read_hounsfield(path)
    except (NiftiError, OSError) as error:
        return None, [(path, str(error))]
    if volume.shape[0] != len(paths):
        return None, [(path, f"the manifest has {len(paths)} slices of this volume, the file {volume.shape[0]}")]
    return volume, []
