"""The Hounsfield cache on disk: where things live, what marks a series done, how to read it.

Layout (docs/ARCHITECTURE.md)::

    CACHE/meta.json                      {"size": 256, "crop": true, "version": 2, "invert_monochrome1": false[, "spacing": 1.0]}
    CACHE/slices.parquet                 manifest rows of cached slices + crop box + cached size
    CACHE/errors.csv                     path, reason of every slice not cached
    CACHE/series/<series_uid>.npy        int16 HU (z, H, W), z = slice_index
    CACHE/series/<series_uid>.json       sidecar, written after the .npy: marks the series done

Both series files are written under a temporary name and renamed, the sidecar last; a series is
done only when its sidecar exists, matches the request (settings and the exact SOPInstanceUIDs
in order) and the volume's header has the recorded shape. A killed run leaves at most temporary
files, which the next run removes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ichscan.files import atomic_path, is_safe_component, remove_stale_temporaries
from ichscan.prepare.crop import CropBox

CACHE_VERSION: Final[int] = 2  # 2: OpenCV area resize and the 64-px head search
SERIES_DIR: Final[str] = "series"
SLICES_FILE: Final[str] = "slices.parquet"
META_FILE: Final[str] = "meta.json"
ERRORS_FILE: Final[str] = "errors.csv"
CROP_COLUMNS: Final[tuple[str, ...]] = ("crop_y0", "crop_y1", "crop_x0", "crop_x1")
SIZE_COLUMNS: Final[tuple[str, ...]] = ("height", "width")
# scale: mm per cached pixel (row, column): the resampling spacing (or the manifest's pixel
# spacing) × crop box / cached size; NaN when the manifest has no spacing
SPACING_COLUMNS: Final[tuple[str, ...]] = ("cached_spacing_row", "cached_spacing_col")
# Temporary names made by `ichscan.files.atomic_path`: ".<name>.<8 hex>.tmp<suffix>".
# z range [first, last] of the run of truly adjacent slices (segment) each slice belongs to: the
# 2.5D neighbours of a slice stay inside it (`neighbour_z`), never joining slices across a gap.
SEGMENT_COLUMNS: Final[tuple[str, ...]] = ("segment_first", "segment_last")


@dataclass(frozen=True)
class CacheSettings:
    """What a cache was built with; a cache is only ever resumed with the same settings."""

    size: int = 256
    crop: bool = True
    version: int = CACHE_VERSION
    invert_monochrome1: bool = False  # repair exports that stored MONOCHROME1 values inverted
    spacing: float | None = None  # scale: in-plane resampling to this many mm per pixel first


@dataclass(frozen=True)
class SeriesRecord:
    """The sidecar of one completed series."""

    series_instance_uid: str
    sop_instance_uids: tuple[str, ...]
    crop: CropBox
    height: int
    width: int
    settings: CacheSettings


def is_safe_uid(series_uid: str) -> bool:
    """True when the UID can be used as a file name as is (`ichscan.files.is_safe_component`)."""
    return is_safe_component(series_uid)


def series_path(cache_dir: Path, series_uid: str) -> Path:
    """`CACHE/series/<series_uid>.npy`."""
    if not is_safe_uid(series_uid):
        raise ValueError(f"series_instance_uid {series_uid!r} is not usable as a file name")
    return Path(cache_dir) / SERIES_DIR / f"{series_uid}.npy"


def sidecar_path(cache_dir: Path, series_uid: str) -> Path:
    """`CACHE/series/<series_uid>.json`."""
    return series_path(cache_dir, series_uid).with_suffix(".json")


def write_json(path: Path, payload: dict[str, object]) -> None:
    """Write `payload` as JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def read_settings(cache_dir: Path) -> CacheSettings | None:
    """The settings in `CACHE/meta.json`, or None when the cache is new."""
    path = Path(cache_dir) / META_FILE
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        spacing = meta.get("spacing")  # scale: absent in caches made before --spacing
        return CacheSettings(
            int(meta["size"]),
            bool(meta["crop"]),
            int(meta["version"]),
            bool(meta.get("invert_monochrome1", False)),
            None if spacing is None else float(spacing),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a valid cache meta.json ({error})") from error


def write_sidecar(cache_dir: Path, record: SeriesRecord) -> None:
    """Mark a series done (call only after its volume has been renamed into place)."""
    payload = asdict(record)
    payload["sop_instance_uids"] = list(record.sop_instance_uids)
    write_json(sidecar_path(cache_dir, record.series_instance_uid), payload)


def read_sidecar(cache_dir: Path, series_uid: str) -> SeriesRecord | None:
    """The sidecar of a series, or None when absent or unreadable (then the series is redone)."""
    path = sidecar_path(cache_dir, series_uid)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return SeriesRecord(
            series_instance_uid=str(payload["series_instance_uid"]),
            sop_instance_uids=tuple(str(uid) for uid in payload["sop_instance_uids"]),
            crop=CropBox(**{key: int(value) for key, value in payload["crop"].items()}),
            height=int(payload["height"]),
            width=int(payload["width"]),
            settings=CacheSettings(**payload["settings"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def completed_record(
    cache_dir: Path, series_uid: str, sop_instance_uids: tuple[str, ...], settings: CacheSettings
) -> SeriesRecord | None:
    """The sidecar of `series_uid` if the series is done for exactly these slices and settings."""
    record = read_sidecar(cache_dir, series_uid)
    if record is None or record.settings != settings or record.sop_instance_uids != sop_instance_uids:
        return None
    try:
        shape = np.load(series_path(cache_dir, series_uid), mmap_mode="r").shape
    except (OSError, ValueError):
        return None
    if shape != (len(sop_instance_uids), record.height, record.width):
        return None
    return record


def remove_temporary_files(cache_dir: Path) -> list[Path]:
    """Delete the temporary files a killed run left in the cache (`ichscan.files` names whose
    process is gone); return them."""
    removed: list[Path] = []
    for folder in (Path(cache_dir), Path(cache_dir) / SERIES_DIR):
        removed += remove_stale_temporaries(folder)
    return removed


def segment_columns(slice_index: NDArray[np.integer], series_code: NDArray[np.integer],
                    segment: NDArray[np.integer] | None) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """`SEGMENT_COLUMNS` for whole cached series (rows grouped by series, z ascending): the first
    and last z of each row's segment (the whole series when `segment` is None)."""
    key = pd.DataFrame({"series": series_code, "segment": 0 if segment is None else segment, "z": slice_index})
    grouped = key.groupby(["series", "segment"], sort=False)["z"]
    return (grouped.transform("min").to_numpy(np.int32), grouped.transform("max").to_numpy(np.int32))


def neighbour_z(
    slices: pd.DataFrame, offsets: NDArray[np.integer] | list[int] | tuple[int, ...], depth: NDArray[np.integer]
) -> NDArray[np.int64]:
    """``(n, len(offsets))`` z of each row's 2.5D neighbours: ``slice_index + offset`` clamped to
    the row's segment (`SEGMENT_COLUMNS`; the whole series ``[0, depth − 1]`` in a cache without
    them), so a neighbour never lies across a gap. `depth`: per row, its series' cached depth."""
    z = slices["slice_index"].to_numpy(np.int64)[:, None] + np.asarray(offsets, dtype=np.int64)[None, :]
    if all(column in slices.columns for column in SEGMENT_COLUMNS):
        first = slices[SEGMENT_COLUMNS[0]].to_numpy(np.int64)[:, None]
        last = slices[SEGMENT_COLUMNS[1]].to_numpy(np.int64)[:, None]
    else:
        first, last = np.zeros((len(slices), 1), np.int64), np.asarray(depth, np.int64)[:, None] - 1
    return np.clip(z, first, last)


def read_series(
    cache_dir: str | Path, series_uid: str, mmap: bool = False
) -> NDArray[np.int16]:
    """One series' int16 HU volume ``(z, H, W)``, z = slice_index (memory-mapped with `mmap`)."""
    path = series_path(Path(cache_dir), series_uid)
    if not path.exists():
        raise FileNotFoundError(f"{path}: series {series_uid} is not in the cache")
    return np.load(path, mmap_mode="r" if mmap else None)


def read_slices(cache_dir: str | Path) -> pd.DataFrame:
    """The slices table `CACHE/slices.parquet` (manifest columns + crop box + height, width)."""
    path = Path(cache_dir) / SLICES_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no slices table (run `ichscan prepare` first)")
    return pd.read_parquet(path)
