"""`index_inputs`: DICOM files and NIfTI volumes under one folder → one manifest.

DICOM files are indexed by `ichscan.dicom.index_folder` as before; every ``.nii``/``.nii.gz`` file
(which the DICOM index skips as not DICOM) becomes one series of axial slices (orientation, HU and
spacing: `ichscan.nifti.volume`), with manifest rows like a DICOM series'.

Identifiers of a NIfTI volume are synthetic but stable: they derive from its path relative to the
indexed folder (its file name when a single file is indexed), `key` below, so re-indexing the same
tree gives the same ids wherever the tree is mounted:

- ``series_instance_uid`` = ``2.25.<uuid5("ichscan:nifti:series:" + key) as an integer>`` (the
  DICOM form of a UUID-derived UID), ``study_instance_uid`` likewise with ``study``, each slice's
  ``sop_instance_uid`` with ``slice:<key>#<z>``;
- ``patient_id`` = `key` without .nii/.nii.gz, ``image_id`` = that with "/" → "_" plus ``_z<z>``
  (3 digits), z the anatomical slice index (feet → head) — not the stored k, which may run the
  other way.

Masks (`masks_dir`): a NIfTI label volume with the same relative path (and the same grid) as its
image, voxel value v = 1…5 meaning subtype ``LABELS[v]`` (epidural, intraparenchymal,
intraventricular, subarachnoid, subdural: the order of e.g. the BHSD data set), 0 background. A
slice is labelled positive for a subtype when at least one of its voxels has that value, `any`
when any subtype is. The mask is written in the phantom's format (docs/ARCHITECTURE.md) to
``masks_out/<series_instance_uid>.npz``: ``mask`` uint8 ``(z, H, W)`` with bit v−1 set where
subtype v is, and ``image_ids`` in slice order. A volume whose mask is missing or unusable keeps
NaN labels and the mask is listed in the errors.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ichscan.dicom.index import MANIFEST_COLUMNS, IndexResult, index_folder
from ichscan.dicom.order import ORDERED_BY
from ichscan.files import atomic_path
from ichscan.labels import LABELS
from ichscan.nifti.volume import (
    NiftiError,
    NiftiGeometry,
    is_nifti,
    read_geometry,
    read_labels,
    volume_stem,
)

UID_ROOT: Final[str] = "2.25."
N_SUBTYPES: Final[int] = len(LABELS) - 1
MASKS_FOLDER: Final[str] = "masks"


def nifti_uid(kind: str, key: str) -> str:
    """A stable DICOM UID (``2.25.<integer of a UUID-5>``) for `kind` (series, study, slice) of `key`."""
    return UID_ROOT + str(uuid.uuid5(uuid.NAMESPACE_URL, f"ichscan:nifti:{kind}:{key}").int)


def volume_key(path: Path, root: Path) -> str:
    """The path of a volume relative to the indexed folder (its name when `root` is the file)."""
    return path.name if path == root else path.relative_to(root).as_posix()


def volume_rows(path: Path, key: str, geometry: NiftiGeometry) -> pd.DataFrame:
    """The manifest rows of one volume (labels not included), z = anatomical slice index."""
    depth = geometry.depth
    stem = key[: len(key) - (len(Path(key).name) - len(volume_stem(key)))]
    image_stem = stem.replace("/", "_")
    return pd.DataFrame(
        {
            "image_id": [f"{image_stem}_z{z:03d}" for z in range(depth)],
            "sop_instance_uid": [nifti_uid("slice", f"{key}#{z}") for z in range(depth)],
            "patient_id": stem,
            "study_instance_uid": nifti_uid("study", key),
            "series_instance_uid": nifti_uid("series", key),
            "position": geometry.positions,
            "slice_index": np.arange(depth),
            "n_slices": depth,
            "segment": 0,  # a volume's slices lie on one regular grid: no gaps
            "ordered_by": ORDERED_BY[0],  # the affine gives each slice's position along the normal
            "rows": geometry.rows,
            "columns": geometry.columns,
            "pixel_spacing_row": geometry.pixel_spacing_row,
            "pixel_spacing_col": geometry.pixel_spacing_col,
            "slice_thickness": geometry.slice_spacing,
            "rescale_slope": geometry.slope,
            "rescale_intercept": geometry.intercept,
            "bits_stored": geometry.bits,
            "pixel_representation": int(geometry.signed),
            "photometric_interpretation": "MONOCHROME2",
            "transfer_syntax_uid": "",
            "window_center": np.nan,
            "window_width": np.nan,
            "path": str(path),
        }
    )


def mask_labels(mask: NDArray[np.uint8]) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """A ``(z, H, W)`` label volume (0…5) → per-slice labels ``(z, 6)`` and the bit-coded mask.

    ValueError when a value above 5 occurs.
    """
    top = int(mask.max()) if mask.size else 0
    if top > N_SUBTYPES:
        raise NiftiError(f"mask value {top}: expected 0 (background) or 1…{N_SUBTYPES} (subtypes in LABELS order)")
    bits = np.zeros(mask.shape, dtype=np.uint8)
    labels = np.zeros((mask.shape[0], len(LABELS)), dtype=np.float32)
    for value in range(1, N_SUBTYPES + 1):
        present = mask == value
        bits[present] |= np.uint8(1 << (value - 1))
        labels[:, value] = present.any(axis=(1, 2))
    labels[:, 0] = labels[:, 1:].max(axis=1)
    return labels, bits


def index_volumes(
    paths: Sequence[Path],
    root: Path,
    *,
    masks_dir: Path | None = None,
    masks_out: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Manifest rows of NIfTI `paths` (under `root`) and errors ``path, reason`` (one per bad file).

    With `masks_dir` the rows get the six label columns (NaN for a volume whose mask is unusable)
    and each mask is written to `masks_out` (module docstring).
    """
    frames: list[pd.DataFrame] = []
    errors: list[tuple[str, str]] = []
    for path in paths:
        key = volume_key(path, root)
        try:
            geometry = read_geometry(path)
        except (NiftiError, OSError) as error:
            errors.append((str(path), str(error)))
            continue
        rows = volume_rows(path, key, geometry)
        if masks_dir is not None:
            labels = np.full((len(rows), len(LABELS)), np.nan, dtype=np.float32)
            mask_path = masks_dir / key
            try:
                if not mask_path.is_file():
                    raise NiftiError("no mask of this name for its volume")
                labels, bits = mask_labels(read_labels(mask_path, geometry))
                if masks_out is not None:
                    series_uid = str(rows["series_instance_uid"].iloc[0])
                    with atomic_path(masks_out / f"{series_uid}.npz") as tmp:
                        np.savez_compressed(tmp, mask=bits, image_ids=rows["image_id"].to_numpy(dtype=str))
            except (NiftiError, OSError) as error:
                errors.append((str(mask_path), f"mask of {path.name} not used: {error}"))
            rows[list(LABELS)] = labels
        frames.append(rows)
    manifest = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(MANIFEST_COLUMNS))
    return manifest, pd.DataFrame(errors, columns=["path", "reason"])


def index_inputs(
    folder: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    *,
    masks_dir: str | os.PathLike[str] | None = None,
    masks_out: str | os.PathLike[str] | None = None,
    executor: Executor | None = None,
) -> IndexResult:
    """`index_folder` for DICOM plus every NIfTI volume under `folder` (or `folder` itself).

    The result is one `IndexResult`: manifest rows of both kinds sorted by series and slice, the
    errors of both, `n_files` counting NIfTI files too and `skipped` no longer listing them.
    """
    root = Path(folder).absolute()
    if root.is_file() and is_nifti(root):
        dicom = IndexResult(pd.DataFrame(columns=list(MANIFEST_COLUMNS)), pd.DataFrame(columns=["path", "reason"]), 0, [str(root)])
    else:
        dicom = index_folder(root, labels_csv=labels_csv, workers=workers, progress=progress, executor=executor)
    masks_root = None if masks_dir is None else Path(masks_dir).absolute()
    volumes = [  # masks kept inside the indexed folder are not volumes
        Path(p) for p in dicom.skipped if is_nifti(p) and (masks_root is None or not Path(p).is_relative_to(masks_root))
    ]
    if not volumes and masks_dir is None:
        return dicom
    nifti, nifti_errors = index_volumes(
        volumes,
        root,
        masks_dir=None if masks_dir is None else Path(masks_dir),
        masks_out=None if masks_out is None else Path(masks_out),
    )
    dtypes = dict(MANIFEST_COLUMNS)
    if any(label in nifti.columns or label in dicom.manifest.columns for label in LABELS):
        dtypes |= {label: "float32" for label in LABELS}
    parts = [frame for frame in (dicom.manifest, nifti) if len(frame)]
    manifest = (
        pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(dtypes))
    ).reindex(columns=list(dtypes))
    manifest = manifest.astype(dtypes).sort_values(["series_instance_uid", "slice_index"], kind="stable")
    errors = pd.concat([frame for frame in (dicom.errors, nifti_errors) if len(frame)] or [nifti_errors], ignore_index=True)
    return replace(
        dicom,
        manifest=manifest.reset_index(drop=True),
        errors=errors.sort_values("path", kind="stable").reset_index(drop=True),
        n_files=dicom.n_files + len(volumes),
        skipped=[p for p in dicom.skipped if Path(p) not in set(volumes)],
    )
