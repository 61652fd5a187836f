"""Head-like CT series written as DICOM files by the tests, and their manifests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from dicom_factory import write_ct_slice

AIR = -1024
PADDING = -3024  # outside the scanner's circular field of view
BRAIN = 40
SKULL = 1000
HEAD_REST = 300


def head_volume(
    depth: int = 6,
    rows: int = 64,
    columns: int = 80,
    *,
    center: tuple[float, float] = (28.0, 40.0),
    radii: tuple[float, float] = (18.0, 14.0),
    head_rest_row: int | None = 54,
) -> np.ndarray:
    """A (z, rows, columns) int16 HU volume: brain in a skull ring, a head-rest plate below it,
    padding outside a circular field of view, and slice z's brain at 40 + z (to check order)."""
    y, x = np.mgrid[:rows, :columns].astype(np.float64)
    radius = ((y - center[0]) / radii[0]) ** 2 + ((x - center[1]) / radii[1]) ** 2
    slice_ = np.full((rows, columns), AIR, dtype=np.int16)
    slice_[((y - rows / 2) ** 2 + (x - columns / 2) ** 2) > (0.5 * max(rows, columns)) ** 2] = PADDING
    slice_[radius < 1.0] = SKULL
    if head_rest_row is not None:
        slice_[head_rest_row : head_rest_row + 3, columns // 5 : 4 * columns // 5] = HEAD_REST
    volume = np.repeat(slice_[None], depth, axis=0)
    brain = radius < 0.75
    volume[:, brain] = (BRAIN + np.arange(depth, dtype=np.int16))[:, None]
    return volume


def write_series(
    folder: Path,
    volume: np.ndarray,
    *,
    syntaxes: Sequence[str] = (ExplicitVRLittleEndian,),
    spacing: float = -5.0,
    seed: int = 0,
    series_uid: str | None = None,
) -> pd.DataFrame:
    """Write `volume` (z = anatomical order) as one file per slice under random names; return the
    manifest rows (ARCHITECTURE.md columns) in shuffled order.

    Slice z sits at position z × `spacing` (negative: files run head-to-feet, so position order
    is the reverse of the volume's), and `syntaxes` are cycled over the slices.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    depth = volume.shape[0]
    positions = np.arange(depth) * spacing
    order = np.argsort(positions)  # independent anatomical order: ascending position
    slice_index = np.empty(depth, dtype=np.int32)
    slice_index[order] = np.arange(depth, dtype=np.int32)
    rows = []
    for z in rng.permutation(depth):
        sop_uid = generate_uid()
        path = write_ct_slice(
            folder / f"{rng.integers(1 << 40):010x}.dcm",
            volume[z].astype(np.int16),
            position=(0.0, 0.0, float(positions[z])),
            intercept=0.0,
            series_uid=series_uid,
            study_uid=study_uid,
            sop_uid=sop_uid,
            transfer_syntax=syntaxes[int(z) % len(syntaxes)],
        )
        rows.append(
            {
                "image_id": sop_uid,
                "sop_instance_uid": sop_uid,
                "patient_id": "PAT0",
                "study_instance_uid": study_uid,
                "series_instance_uid": series_uid,
                "position": float(positions[z]),
                "slice_index": int(slice_index[z]),
                "n_slices": depth,
                "rows": volume.shape[1],
                "columns": volume.shape[2],
                "path": str(path.resolve()),
            }
        )
    frame = pd.DataFrame(rows)
    return frame.astype({"slice_index": np.int32, "n_slices": np.int32, "rows": np.int32, "columns": np.int32})


def anatomical(volume: np.ndarray, spacing: float = -5.0) -> np.ndarray:
    """`volume` reordered by ascending position, as the cache must store it."""
    return volume[np.argsort(np.arange(volume.shape[0]) * spacing)]
