"""The files `ichscan predict` writes (docs/ARCHITECTURE.md), each atomically.

OUT/slices.parquet, OUT/submission.csv (Kaggle `ID,Label`), OUT/studies.csv, OUT/studies.json,
OUT/errors.csv (`path, reason` of every input file that was skipped).
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Final

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


# Everything `predict` writes into OUT; OUT is replaced whole (`ichscan.files.atomic_folder`), so
# a killed run leaves the old complete result or the new one, never a mix.
OUTPUT_NAMES: Final[frozenset[str]] = frozenset(
    {"slices.parquet", "submission.csv", "studies.csv", "studies.json", "errors.csv", "explain", "report.html"}
)
_OWN_TEMPORARY: Final[re.Pattern[str]] = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.(tmp|old)(\.\w+)?$|^\.cache-")


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_output_folder(out_dir: Path, input_path: Path, cache_dir: Path | None) -> None:
    """ValueError unless `out_dir` may be replaced whole: it is new, empty or an earlier
    prediction (only `OUTPUT_NAMES`), and neither the input nor `--cache` lies inside it."""
    out_dir = Path(out_dir)
    for what, path in (("the input", input_path), ("--cache", cache_dir)):
        if path is not None and _inside(Path(path), out_dir):
            raise ValueError(f"{path}: {what} is inside the output folder {out_dir}, which predict "
                             "replaces whole; choose another output folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: the output exists and is not a folder")
    if out_dir.is_dir():
        foreign = sorted(p.name for p in out_dir.iterdir()
                         if p.name not in OUTPUT_NAMES and not _OWN_TEMPORARY.match(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ValueError(f"{out_dir}: holds files that are not ichscan predictions ({shown}); "
                             "predict replaces its output folder whole: choose a new or empty one")


def published(result: Any, staging: Path, out_dir: Path) -> Any:
    """A `PredictionResult` written in `staging` with its paths moved to `out_dir`."""
    files = {name: out_dir / Path(path).relative_to(staging) for name, path in result.files.items()}
    return dataclasses.replace(result, out_dir=out_dir, files=files)


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
