"""A tiny Hounsfield cache in the ARCHITECTURE.md layout, written with NumPy + pandas."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ichscan.labels import LABELS

CacheWriter = Callable[[Path, Mapping[str, np.ndarray]], pd.DataFrame]


def write_cache(root: Path, volumes: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """Write ``root/series/<uid>.npy`` + ``slices.parquet`` + ``meta.json``; return the slices."""
    (root / "series").mkdir(parents=True, exist_ok=True)
    rows = []
    for number, (uid, volume) in enumerate(volumes.items()):
        np.save(root / "series" / f"{uid}.npy", volume.astype(np.int16))
        depth, height, width = volume.shape
        for z in range(depth):
            rows.append({
                "image_id": f"ID_{number:03d}{z:03d}",
                "patient_id": f"P{number // 2}",
                "study_instance_uid": f"study{number}",
                "series_instance_uid": uid,
                "slice_index": z,
                "n_slices": depth,
                "height": height,
                "width": width,
            })
    slices = pd.DataFrame(rows)
    slices["slice_index"] = slices["slice_index"].astype(np.int32)
    slices.to_parquet(root / "slices.parquet")
    (root / "meta.json").write_text(json.dumps({"size": 8, "crop": True, "version": 1}))
    return slices


def coded_volume(series_number: int, depth: int, size: int = 8) -> np.ndarray:
    """A volume whose every pixel encodes its series and z: ``1000·series + 10·z``."""
    z = np.arange(depth, dtype=np.int16)[:, None, None]
    return np.broadcast_to(1000 * series_number + 10 * z, (depth, size, size)).astype(np.int16)


@pytest.fixture
def cache_writer() -> CacheWriter:
    return write_cache


@pytest.fixture
def coded_cache(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Three series of depths 4, 1 and 5 with coded pixels, labels, rows shuffled."""
    volumes = {f"1.2.3.{n}": coded_volume(n, depth) for n, depth in enumerate((4, 1, 5))}
    slices = write_cache(tmp_path, volumes)
    rng = np.random.default_rng(7)
    labels = (rng.random((len(slices), len(LABELS))) < 0.3).astype(np.float32)
    labels[:, 0] = labels[:, 1:].max(axis=1)
    slices[list(LABELS)] = labels
    slices = slices.sample(frac=1.0, random_state=3).reset_index(drop=True)
    return tmp_path, slices
