"""Fixtures for the predict tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from run_factory import CACHE_SIZE, write_cache

from dicom_factory import write_ct_slice


@pytest.fixture(scope="session", autouse=True)
def _single_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture()
def hu_volumes() -> dict[str, np.ndarray]:
    """Two studies: one with two series (5 and 3 slices), one with one series of 4 slices."""
    rng = np.random.default_rng(0)
    shapes = {"1.2.aaa": 5, "1.2.bbb": 3, "1.2.ccc": 4}
    return {
        uid: rng.integers(-100, 150, size=(z, CACHE_SIZE, CACHE_SIZE)).astype(np.int16)
        for uid, z in shapes.items()
    }


@pytest.fixture()
def tiny_cache(tmp_path: Path, hu_volumes: dict[str, np.ndarray]) -> tuple[Path, pd.DataFrame]:
    study_of = {"1.2.aaa": "9.1", "1.2.bbb": "9.1", "1.2.ccc": "9.2"}
    cache = tmp_path / "cache"
    return cache, write_cache(cache, hu_volumes, study_of)


def head_slice(size: int, slice_number: int, bleed: bool) -> np.ndarray:
    """HU of one axial slice: air, a skull ring, brain, optionally a bright blob of blood."""
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - size / 2, xx - size / 2 - 2)
    hu = np.where(radius < 0.42 * size, 30 + slice_number, -1000)
    hu = np.where((radius >= 0.36 * size) & (radius < 0.42 * size), 1000, hu)
    if bleed:
        hu = np.where(np.hypot(yy - 0.4 * size, xx - 0.6 * size) < 0.1 * size, 75, hu)
    return hu.astype(np.int16)


@pytest.fixture()
def dicom_folder(tmp_path: Path) -> Path:
    """Two studies (4 and 3 slices, files in shuffled nested folders) and one corrupt file."""
    root = tmp_path / "dicom"
    for study, n_slices in (("1.3.1", 4), ("1.3.2", 3)):
        folder = root / f"patient-{study}" / "series"
        folder.mkdir(parents=True)
        for z in (2, 0, 3, 1)[:n_slices] if n_slices == 4 else (1, 2, 0):
            write_ct_slice(
                folder / f"ID_{study[-1]}{z:03d}abc.dcm",
                head_slice(48, z, bleed=z == 1) + 1024,
                position=(0.0, 0.0, 5.0 * z),
                intercept=-1024.0,
                patient_id=f"P{study}",
                study_uid=study,
                series_uid=f"{study}.1",
                sop_uid=f"{study}.1.{z}",
                pixel_spacing=(0.5, 0.5),
            )
    (root / "broken.dcm").write_bytes(b"DICM but not really" * 10)
    return root
