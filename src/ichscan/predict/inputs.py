"""What `ichscan predict` accepts: a DICOM folder, a manifest Parquet or an existing HU cache.

Whatever the input, it is brought to a cache (`ichscan.prepare` layout) so that every slice is
decoded once and shared by all models of an ensemble. Files that cannot be used are collected as
`path, reason` rows, never dropped silently.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from ichscan.data.contract import ContractError, InputContract
from ichscan.dicom.index import ID_COLUMNS

InputKind = Literal["dicom", "manifest", "cache"]
ERROR_COLUMNS: tuple[str, str] = ("path", "reason")


class InputError(ValueError):
    """INPUT is not usable at all (not a DICOM folder, manifest or cache); names the path."""


@dataclass
class PreparedInput:
    """A cache ready for inference, the slices it holds, and every file that was left out."""

    kind: InputKind
    cache_dir: Path
    slices: pd.DataFrame
    errors: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)


def empty_errors() -> pd.DataFrame:
    """An error table with no rows and the `path, reason` columns."""
    return pd.DataFrame({c: pd.Series(dtype=str) for c in ERROR_COLUMNS})


def detect_input_kind(path: Path) -> InputKind:
    """`cache` for a folder holding meta.json and slices.parquet, `manifest` for a .parquet file,
    `dicom` for any other folder; InputError otherwise."""
    if path.is_dir():
        if (path / "meta.json").is_file() and (path / "slices.parquet").is_file():
            return "cache"
        return "dicom"
    if path.is_file() and path.suffix.lower() == ".parquet":
        return "manifest"
    if path.is_file() and path.name.lower().endswith((".nii", ".nii.gz")):  # scale: one NIfTI volume
        return "dicom"
    if not path.exists():
        raise InputError(f"{path}: does not exist")
    raise InputError(f"{path}: not a DICOM folder, a manifest (.parquet) or a cache folder")


def read_manifest(path: Path) -> pd.DataFrame:
    """Read a manifest Parquet, checking it has the id columns predictions are keyed on."""
    try:
        manifest = pd.read_parquet(path)
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read as Parquet ({error})") from error
    missing = [c for c in (*ID_COLUMNS, "path") if c not in manifest.columns]
    if missing:
        raise InputError(f"{path}: not a manifest, missing columns {', '.join(missing)}")
    return manifest


def read_error_file(path: Path) -> pd.DataFrame:
    """The `path, reason` rows of an `.errors.csv` written by `ichscan index`, if it exists."""
    if not path.is_file():
        return empty_errors()
    errors = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not set(ERROR_COLUMNS) <= set(errors.columns):
        return empty_errors()
    return errors[list(ERROR_COLUMNS)]


def unaccounted_slices(manifest: pd.DataFrame, cached: pd.DataFrame, errors: pd.DataFrame) -> pd.DataFrame:
    """Error rows for manifest slices absent from the cache that no error already explains."""
    absent = manifest[~manifest["image_id"].isin(cached["image_id"])]
    absent = absent[~absent["path"].astype(str).isin(errors["path"].astype(str))]
    return pd.DataFrame(
        {
            "path": absent["path"].astype(str).to_numpy(),
            "reason": "slice missing from the prepared cache (its series could not be prepared)",
        }
    )


def prepare_input(
    input_path: Path,
    cache_dir: Path,
    *,
    contract: InputContract,
    workers: int | None = None,
    progress: bool = True,
    executor: Executor | None = None,
) -> PreparedInput:
    """Bring INPUT to a cache as the model's `contract` says: index a DICOM folder and prepare it,
    prepare a manifest, or use a cache prepared with the contract's size and crop.

    `cache_dir` is where a new cache is written (ignored for a cache input). Raises InputError
    when INPUT cannot be used at all (also a cache made with other settings than the contract's);
    single bad files end up in `.errors`. `executor`: where index and prepare run (a Dask
    cluster's, `ichscan.parallel`); default a local pool.
    """
    from ichscan.prepare import prepare_cache, read_slices
    from ichscan.prepare.cache import ERRORS_FILE

    input_path = Path(input_path)
    kind = detect_input_kind(input_path)
    timings: dict[str, float] = {}
    if kind == "cache":
        try:
            json.loads((input_path / "meta.json").read_text())
            slices = read_slices(input_path)
        except (OSError, ValueError) as error:
            raise InputError(f"{input_path}: unreadable cache ({error})") from error
        try:
            contract.check_cache(input_path)
        except ContractError as error:
            raise InputError(str(error)) from error
        errors = read_error_file(input_path / ERRORS_FILE)  # what `ichscan prepare` skipped
        return PreparedInput(kind, input_path, slices, errors, timings)

    if kind == "dicom":
        from ichscan.nifti.index import index_inputs  # scale: DICOM and NIfTI volumes

        start = time.perf_counter()
        indexed = index_inputs(input_path, workers=workers, progress=progress, executor=executor)
        timings["index"] = time.perf_counter() - start
        manifest, errors = indexed.manifest, indexed.errors[list(ERROR_COLUMNS)]
    else:
        manifest = read_manifest(input_path)
        errors = read_error_file(input_path.with_name(f"{input_path.stem}.errors.csv"))

    if manifest.empty:
        return PreparedInput(kind, cache_dir, manifest, errors, timings)
    start = time.perf_counter()
    prepared = prepare_cache(manifest, cache_dir, size=contract.cache_size, crop=contract.crop.enabled,
                             spacing=contract.spacing, workers=workers, progress=progress, executor=executor)
    timings["prepare"] = time.perf_counter() - start
    slices = read_slices(cache_dir)
    errors = pd.concat([errors, prepared.errors[list(ERROR_COLUMNS)]], ignore_index=True).drop_duplicates()
    errors = pd.concat([errors, unaccounted_slices(manifest, slices, errors)], ignore_index=True)
    return PreparedInput(kind, cache_dir, slices, errors.reset_index(drop=True), timings)
