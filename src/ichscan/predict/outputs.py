"""The files `ichscan predict` writes (docs/ARCHITECTURE.md), each atomically.

OUT/slices.parquet, OUT/submission.csv (Kaggle `ID,Label`), OUT/studies.csv, OUT/studies.json,
OUT/errors.csv (`path, reason` of every input file that was skipped).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ichscan.files import atomic_path
from ichscan.labels import LABELS

SLICE_COLUMNS: tuple[str, ...] = (
    "image_id",
    "sop_instance_uid",
    "study_instance_uid",
    "series_instance_uid",
    "slice_index",
    *LABELS,
)


def submission_ids(image_ids: np.ndarray) -> np.ndarray:
    """`ID_<id>_<subtype>` for every image (image-major, LABELS order); RSNA ids keep their `ID_`."""
    ids = pd.Series(image_ids, dtype=str)
    prefixed = ids.where(ids.str.startswith("ID_"), "ID_" + ids).to_numpy(dtype=object)
    suffixes = np.array([f"_{label}" for label in LABELS], dtype=object)
    return (np.repeat(prefixed, len(LABELS)) + np.tile(suffixes, len(prefixed))).astype(str)


def submission_frame(slices: pd.DataFrame) -> pd.DataFrame:
    """The Kaggle submission: six `ID,Label` rows per image, probabilities in LABELS order."""
    return pd.DataFrame(
        {
            "ID": submission_ids(slices["image_id"].to_numpy()),
            "Label": slices[list(LABELS)].to_numpy(dtype=np.float64).reshape(-1),
        }
    )


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` to Parquet atomically."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return path


def write_csv(frame: pd.DataFrame, path: Path, float_format: str | None = None) -> Path:
    """Write `frame` to CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format)
    return path


def write_json(payload: Any, path: Path) -> Path:
    """Write `payload` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
    return path
