"""`index_folder`: every CT slice under a folder → the manifest (one row per slice) and its errors.

Which files are read: every regular file under the folder, at any depth (flat RSNA folders and
nested patient/study/series folders alike), whatever its name or extension (many DICOM files have
none). Not read: hidden files and folders (name starting with "."), and files that are obviously
not DICOM by extension (`NOT_DICOM_SUFFIXES`, e.g. the label CSV or masks kept next to the
images) or named DICOMDIR; those are listed in `IndexResult.skipped` and counted in the summary.
Every file that is read ends either in the manifest or in the errors with a one-line reason.

Headers are read in parallel worker processes, `chunk_size` files per task (few, large tasks keep
the inter-process overhead small); with one worker or one chunk everything runs in-process.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from ichscan.dicom.headers import (
    HeaderChunk,
    join_chunks,
    read_header_chunk,
    reason_kind,
)
from ichscan.dicom.labels import LabelJoin, LabelTable, join_labels, read_rsna_labels
from ichscan.dicom.order import order_slices, series_warnings
from ichscan.files import atomic_path, die_with_parent
from ichscan.labels import LABELS

NOT_DICOM_SUFFIXES: Final[frozenset[str]] = frozenset(
    {
        ".csv", ".json", ".txt", ".md", ".html", ".pdf", ".xml", ".yaml", ".yml", ".py", ".log",
        ".parquet", ".npy", ".npz", ".pkl", ".png", ".jpg", ".jpeg", ".gif", ".zip", ".gz",
        ".tar", ".7z", ".nii", ".nrrd", ".mha",
    }
)  # fmt: skip

# The manifest's columns and dtypes (docs/ARCHITECTURE.md), labels excluded.
# The columns that identify a slice, carried from the manifest into every later table.
ID_COLUMNS: Final[tuple[str, ...]] = (
    "image_id",
    "sop_instance_uid",
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "slice_index",
)
MANIFEST_COLUMNS: Final[dict[str, str]] = {
    "image_id": "str",
    "sop_instance_uid": "str",
    "patient_id": "str",
    "study_instance_uid": "str",
    "series_instance_uid": "str",
    "position": "float64",
    "slice_index": "int32",
    "n_slices": "int32",
    "rows": "int32",
    "columns": "int32",
    "pixel_spacing_row": "float32",
    "pixel_spacing_col": "float32",
    "slice_thickness": "float32",
    "rescale_slope": "float64",
    "rescale_intercept": "float64",
    "bits_stored": "int16",
    "pixel_representation": "int16",
    "photometric_interpretation": "str",
    "transfer_syntax_uid": "str",
    "window_center": "float32",
    "window_width": "float32",
    "segment": "int32",
    "ordered_by": "str",
    "path": "str",
}
MIN_CHUNK: Final[int] = 32
MAX_CHUNK: Final[int] = 512
CHUNKS_PER_WORKER: Final[int] = 8


@dataclass(frozen=True)
class IndexResult:
    """The manifest, the files that could not be used and the bookkeeping of the run."""

    manifest: pd.DataFrame
    errors: pd.DataFrame  # path, reason
    n_files: int  # files read (manifest rows + errors)
    skipped: list[str] = field(default_factory=list)  # not read: obviously not DICOM
    labels: LabelTable | None = None
    label_join: LabelJoin | None = None
    warnings: pd.DataFrame = field(default_factory=lambda: series_warnings(pd.DataFrame()))

    def summary(self) -> dict[str, int]:
        """Counts for the report: files, slices, series, studies, patients, errors, joins."""
        counts = {
            "files": self.n_files,
            "skipped": len(self.skipped),
            "slices": len(self.manifest),
            "series": self.manifest["series_instance_uid"].nunique(),
            "studies": self.manifest["study_instance_uid"].nunique(),
            "patients": self.manifest["patient_id"].nunique(),
            "errors": len(self.errors),
            "series with warnings": self.warnings["series_instance_uid"].nunique(),
        }
        if self.label_join is not None and self.labels is not None:
            counts |= {
                "labelled slices": self.label_join.labelled_slices,
                "slices without labels": self.label_join.unlabelled_slices,
                "labelled images without DICOM": len(self.label_join.labels_without_dicom),
                "label rows": self.labels.n_rows,
                "duplicate label rows": self.labels.n_duplicate_rows,
                "conflicting labels": len(self.labels.conflicts),
                "images missing subtypes": len(self.labels.incomplete),
                "invalid label rows": len(self.labels.invalid),
                "images with inconsistent any": len(self.labels.inconsistent),
            }
        return counts

    def errors_by_kind(self) -> dict[str, int]:
        """Number of errors per reason kind (`not DICOM`, `truncated`, ...), most frequent first."""
        return reason_kind(self.errors["reason"]).value_counts().to_dict()


def find_files(dicom_dir: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(files to read, files skipped as obviously not DICOM), both sorted, absolute paths."""
    root = Path(dicom_dir).absolute()
    if root.is_file():
        return [str(root)], []
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    files: list[str] = []
    skipped: list[str] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            full = os.path.join(folder, name)
            not_dicom = (
                os.path.splitext(name)[1].lower() in NOT_DICOM_SUFFIXES or name == "DICOMDIR"
            )
            (skipped if not_dicom else files).append(full)
    return sorted(files), sorted(skipped)


def _chunks(paths: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(paths), size):
        yield paths[start : start + size]


def _pool(workers: int) -> Executor:
    """A process pool; `fork` on Linux (workers start in milliseconds with pydicom loaded).
    Workers die with the parent, even when it is killed (`ichscan.files.die_with_parent`)."""
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context(method),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


def default_workers() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read_all(
    paths: list[str], workers: int, chunk_size: int, progress: bool, executor: Executor | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    chunks = list(_chunks(paths, chunk_size))
    results: list[HeaderChunk] = []
    columns = (
        TextColumn("reading headers"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    if executor is None and (workers == 1 or len(chunks) <= 1):
        with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
            task = bar.add_task("headers", total=len(paths))
            for chunk in chunks:
                results.append(read_header_chunk(chunk))
                bar.advance(task, len(chunk))
    else:
        with _pool(workers) if executor is None else executor as pool:  # scale: --dask seam
            futures = [pool.submit(read_header_chunk, chunk) for chunk in chunks]
            # The bar's refresh thread starts only after the workers were forked.
            with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
                task = bar.add_task("headers", total=len(paths))
                for future, chunk in zip(futures, chunks):  # in order: a deterministic table
                    results.append(future.result())
                    bar.advance(task, len(chunk))
    return join_chunks(results)


def index_folder(
    dicom_dir: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
    *,
    chunk_size: int | None = None,
    executor: Executor | None = None,
) -> IndexResult:
    """Index every CT slice under `dicom_dir` (see the module docstring for which files).

    `workers` processes read the headers (default: the usable CPUs); `labels_csv` (RSNA
    `ID,Label`) adds the six label columns. Bad files never raise: they are in `.errors`.
    `executor` (e.g. `ichscan.parallel.dask_executor`'s) reads the chunks instead of a local
    pool; `workers` then defaults to its task slots (chunk sizing only).
    Raises `FileNotFoundError` when `dicom_dir` does not exist and `LabelFileError` when the label
    file cannot be read at all.
    """
    if workers is None:
        workers = getattr(executor, "n_workers", None) or default_workers()
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    labels = read_rsna_labels(labels_csv) if labels_csv is not None else None
    paths, skipped = find_files(dicom_dir)
    if chunk_size is None:
        chunk_size = min(
            MAX_CHUNK, max(MIN_CHUNK, math.ceil(len(paths) / (workers * CHUNKS_PER_WORKER)))
        )
    headers, read_errors = _read_all(paths, workers, chunk_size, progress, executor)
    ordered, order_errors = order_slices(headers)
    manifest = ordered[list(MANIFEST_COLUMNS)].astype(MANIFEST_COLUMNS)
    errors = pd.concat([read_errors, order_errors], ignore_index=True).sort_values(
        "path", kind="stable"
    )
    if len(manifest) + len(errors) != len(paths):  # every file read is a slice or an error
        raise RuntimeError(
            f"{dicom_dir}: {len(paths)} files read but {len(manifest)} slices + {len(errors)} errors"
        )
    label_join = None
    if labels is not None:
        manifest, label_join = join_labels(manifest, labels)
    return IndexResult(
        manifest=manifest.reset_index(drop=True),
        errors=errors.reset_index(drop=True),
        n_files=len(paths),
        skipped=skipped,
        labels=labels,
        label_join=label_join,
        warnings=series_warnings(manifest),
    )


def sidecar_path(manifest_path: str | os.PathLike[str], kind: str) -> Path:
    """`<dir>/<manifest stem>.<kind>.csv`, e.g. ``manifest.errors.csv``."""
    path = Path(manifest_path)
    return path.with_name(f"{path.stem}.{kind}.csv")


def write_manifest(result: IndexResult, path: str | os.PathLike[str]) -> list[Path]:
    """Write the manifest Parquet, `<stem>.errors.csv` and `<stem>.warnings.csv` (always, maybe
    empty: `series_instance_uid, warning` of fallback orders and gaps) and, when labels were
    joined, `<stem>.label_issues.csv` (`image_id, reason`), each atomically; return the paths.
    """
    written = [Path(path), sidecar_path(path, "errors"), sidecar_path(path, "warnings")]
    with atomic_path(written[0]) as tmp:
        result.manifest.to_parquet(tmp, index=False)
    with atomic_path(written[1]) as tmp:
        result.errors.to_csv(tmp, index=False)
    with atomic_path(written[2]) as tmp:
        result.warnings.to_csv(tmp, index=False)
    if result.labels is not None and result.label_join is not None:
        without_dicom = pd.DataFrame(
            {
                "image_id": result.label_join.labels_without_dicom.astype(str),
                "reason": "labelled image has no DICOM file",
            }
        )
        issues = pd.concat([result.labels.issues(), without_dicom], ignore_index=True)
        written.append(sidecar_path(path, "label_issues"))
        with atomic_path(written[-1]) as tmp:
            issues.to_csv(tmp, index=False)
    return written


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest Parquet back with its contract dtypes."""
    frame = pd.read_parquet(path)
    dtypes = MANIFEST_COLUMNS | {label: "float32" for label in LABELS if label in frame.columns}
    return frame.astype(
        {column: dtype for column, dtype in dtypes.items() if column in frame.columns}
    )


__all__ = [
    "IndexResult",
    "MANIFEST_COLUMNS",
    "NOT_DICOM_SUFFIXES",
    "default_workers",
    "find_files",
    "index_folder",
    "read_manifest",
    "write_manifest",
]
