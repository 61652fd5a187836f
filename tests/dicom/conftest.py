"""Shared helpers of the DICOM tests: the test-slice writer and small series on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dicom_factory import AXIAL, SeriesWriter, write_ct_slice


@pytest.fixture
def write_series() -> SeriesWriter:
    """Write one series: file `folder/names[i]` at `positions[i]` mm along IPP (x, y, z)."""

    def write(
        folder: Path,
        names: Sequence[str],
        positions: Sequence[Sequence[float]],
        *,
        orientation: Sequence[float] = AXIAL,
        series_uid: str = "1.2.826.0.1.1.1",
        study_uid: str = "1.2.826.0.1.1",
        patient_id: str = "PAT0",
        shape: tuple[int, int] = (4, 6),
        **kwargs: object,
    ) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros(shape, dtype=np.int16)
        return [
            write_ct_slice(
                folder / name,
                pixels,
                position=position,
                orientation=orientation,
                series_uid=series_uid,
                study_uid=study_uid,
                patient_id=patient_id,
                **kwargs,
            )
            for name, position in zip(names, positions, strict=True)
        ]

    return write
