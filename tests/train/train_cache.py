"""A tiny Hounsfield cache in the ARCHITECTURE.md layout, written with NumPy + pandas.

Each series is a head phantom: air (−1000 HU), a skull ring (1000 HU), brain (30 HU) and, on its
middle slices, a bright blob of blood (75 HU) — so a network can learn the `any` label in a few
steps. Patient k carries subtype ``1 + k % 5`` on its middle slices.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ichscan.labels import LABELS


def make_cache(root: Path, n_series: int = 10, n_slices: int = 8, size: int = 32, seed: int = 0) -> Path:
    """Write CACHE/series/<uid>.npy, CACHE/slices.parquet and CACHE/meta.json; return CACHE."""
    rng = np.random.default_rng(seed)
    cache = root / "cache"
    (cache / "series").mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size]
    radius = np.hypot(yy - size / 2 + 0.5, xx - size / 2 + 0.5)
    head = np.where(radius < 0.45 * size, 30, -1000).astype(np.int16)
    head[(radius >= 0.38 * size) & (radius < 0.45 * size)] = 1000
    blob = np.hypot(yy - 0.4 * size, xx - 0.55 * size) < 0.12 * size
    rows = []
    for s in range(n_series):
        uid = f"1.2.3.{s}"
        positive = np.zeros(n_slices, dtype=bool)
        positive[n_slices // 4 : n_slices // 4 + n_slices // 2] = True  # ends of every series negative
        volume = np.repeat(head[None], n_slices, axis=0).copy()
        volume[positive] = np.where(blob, 75, volume[positive])
        volume = (volume + rng.normal(0, 4, volume.shape)).round().astype(np.int16)
        np.save(cache / "series" / f"{uid}.npy", volume)
        subtype = 1 + s % 5
        for z in range(n_slices):
            labels = np.zeros(len(LABELS), dtype=np.float32)
            if positive[z]:
                labels[0] = labels[subtype] = 1.0
            rows.append({
                "image_id": f"ID_{s:04x}{z:04x}",
                "sop_instance_uid": f"{uid}.{z}",
                "patient_id": f"P{s}",
                "study_instance_uid": f"1.2.{s}",
                "series_instance_uid": uid,
                "position": float(z) * 5.0,
                "slice_index": np.int32(z),
                "n_slices": np.int32(n_slices),
                "rows": np.int32(size), "columns": np.int32(size),
                "crop_y0": 0, "crop_y1": size, "crop_x0": 0, "crop_x1": size,
                "height": size, "width": size,
                **dict(zip(LABELS, labels)),
            })
    pd.DataFrame(rows).to_parquet(cache / "slices.parquet", index=False)
    (cache / "meta.json").write_text(json.dumps({"size": size, "crop": True, "version": 1}))
    return cache
