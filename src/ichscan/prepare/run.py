"""`prepare_cache`: a manifest → the Hounsfield cache, in parallel across series, resumable.

The parent process groups the manifest by series, skips series already done (sidecar check, see
`ichscan.prepare.cache`), and feeds the rest to a process pool through a bounded window of
`2 × workers` tasks in flight. Workers return metadata only, so the parent's memory is the
manifest plus a few small records, and each worker holds one series at a time: peak memory does
not grow with the number of series.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Executor,
    Future,
    ProcessPoolExecutor,
    wait,
)
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

import cv2
import numpy as np
import pandas as pd
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ichscan.dicom.limits import DEFAULT_LIMITS, PixelLimits
from ichscan.files import atomic_path, die_with_parent, is_safe_component
from ichscan.parallel import CLUSTER_TASKS_IN_FLIGHT_PER_SLOT
from ichscan.prepare.cache import (
    CROP_COLUMNS,
    ERRORS_FILE,
    META_FILE,
    SEGMENT_COLUMNS,
    SERIES_DIR,
    SIZE_COLUMNS,
    SLICES_FILE,
    SPACING_COLUMNS,
    CacheSettings,
    SeriesRecord,
    completed_record,
    read_settings,
    remove_temporary_files,
    segment_columns,
    write_json,
)
from ichscan.prepare.series import (
    ENVIRONMENT_ERRNOS,
    OutputError,
    SeriesOutcome,
    SeriesTask,
    prepare_series,
)

REQUIRED_COLUMNS: Final[tuple[str, ...]] = (
    "series_instance_uid",
    "sop_instance_uid",
    "slice_index",
    "path",
)
ERROR_COLUMNS: Final[tuple[str, ...]] = ("path", "reason")
TASKS_IN_FLIGHT_PER_WORKER: Final[int] = 2

Task = TypeVar("Task")
Result = TypeVar("Result")


@dataclass(frozen=True)
class PrepareResult:
    """The outcome of `prepare_cache`.

    `slices`: the slices table written to `CACHE/slices.parquet`; `errors`: ``path, reason`` of
    every manifest row not cached (also in `CACHE/errors.csv`); series counts: newly `prepared`,
    `skipped` because already done by an earlier run, `failed`.
    """

    cache_dir: Path
    slices: pd.DataFrame
    errors: pd.DataFrame
    prepared: int
    skipped: int
    failed: int


def default_workers() -> int:
    """CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def bounded_map(
    make_executor: Callable[[], Executor],
    function: Callable[[Task], Result],
    tasks: Iterable[Task],
    in_flight: int,
) -> Iterator[tuple[Task, Future[Result]]]:
    """Run `function` over `tasks`, yielding ``(task, done future)`` in completion order.

    At most `in_flight` tasks are submitted ahead of the results consumed, so what is queued
    (and so memory) stays bounded whatever the number of tasks. If a worker process dies (a
    decoder crash, the OOM killer) the pool breaks: the futures in flight come back with
    `BrokenExecutor` and a fresh executor takes the remaining tasks, so one bad file never ends
    the run.
    """
    if in_flight < 1:
        raise ValueError(f"in_flight must be at least 1, got {in_flight}")
    executor = make_executor()
    pending: dict[Future[Result], Task] = {}
    task_iterator = iter(tasks)
    try:
        while True:
            while len(pending) >= in_flight:  # wait for room before taking the next task
                yield from _drain(pending)
            try:
                task = next(task_iterator)
            except StopIteration:
                break
            try:
                future = executor.submit(function, task)
            except BrokenExecutor:
                executor.shutdown(wait=True, cancel_futures=True)
                executor = make_executor()
                future = executor.submit(function, task)
            pending[future] = task
        while pending:
            yield from _drain(pending)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def _drain(pending: dict[Future[Result], Task]) -> Iterator[tuple[Task, Future[Result]]]:
    """Wait for at least one pending future; yield and forget the finished ones."""
    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    for future in done:
        yield pending.pop(future), future


class InlineExecutor(Executor):
    """Runs each task at submission, in this process (``workers=1``: no pool to start).

    Exceptions travel in the future as with a pool; ^C (KeyboardInterrupt) and SystemExit stop
    the run at once.
    """

    def submit(self, fn: Callable[..., Result], /, *args: object, **kwargs: object) -> Future[Result]:  # type: ignore[override]
        future: Future[Result] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as error:
            future.set_exception(error)
        return future


def _init_worker(parent_pid: int) -> None:
    """Workers die with the parent (a killed `prepare` leaves no orphans working on), and use one
    OpenCV thread each: the parallelism is across series (measured: more threads per worker only
    add contention on a machine whose cores the workers already fill)."""
    die_with_parent(parent_pid)
    cv2.setNumThreads(1)


def make_executor(workers: int) -> Executor:
    """A process pool of `workers` (fork where available: no re-import), or inline for 1."""
    if workers <= 1:
        return InlineExecutor()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
    )


def check_manifest(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest sorted in anatomical order within each series; ValueError if unusable."""
    missing = [column for column in REQUIRED_COLUMNS if column not in manifest.columns]
    if missing:
        raise ValueError(f"manifest lacks column(s) {', '.join(missing)}")
    if manifest["path"].isna().any() or manifest["series_instance_uid"].isna().any():
        raise ValueError("manifest has rows without path or series_instance_uid")
    order = ["series_instance_uid", "slice_index"]
    if "position" in manifest.columns:
        order.append("position")
    return manifest.sort_values(order, kind="stable").reset_index(drop=True)


def series_tasks(
    manifest: pd.DataFrame,
    cache_dir: Path,
    settings: CacheSettings,
    limits: PixelLimits = DEFAULT_LIMITS,
) -> Iterator[tuple[SeriesTask, pd.DataFrame]]:
    """One task per series of a sorted manifest, with the series' rows."""
    for series_uid, rows in manifest.groupby("series_instance_uid", sort=False):
        task = SeriesTask(
            series_instance_uid=str(series_uid),
            paths=tuple(rows["path"].astype(str)),
            sop_instance_uids=tuple(rows["sop_instance_uid"].astype(str)),
            cache_dir=cache_dir,
            settings=settings,
            limits=limits,
            pixel_spacing=_pixel_spacing(rows) if settings.spacing is not None else None,
        )
        yield task, rows


def _pixel_spacing(rows: pd.DataFrame) -> tuple[float, float]:
    """The series' (row, column) pixel spacing in mm from its first manifest row (NaN if absent)."""
    if not {"pixel_spacing_row", "pixel_spacing_col"} <= set(rows.columns):
        return (math.nan, math.nan)
    first = rows.iloc[0]
    return (float(first["pixel_spacing_row"]), float(first["pixel_spacing_col"]))


# Ids that later name files (heatmaps, series volumes): a manifest from elsewhere may hold anything.
NAMING_COLUMNS: Final[tuple[str, ...]] = ("series_instance_uid", "sop_instance_uid", "image_id", "study_instance_uid")


def unsafe_id(rows: pd.DataFrame) -> str | None:
    """Why a series cannot be cached because an id of its rows is not usable as a file name."""
    for column in NAMING_COLUMNS:
        if column not in rows.columns:
            continue
        for value in rows[column].astype(str):
            if not is_safe_component(value):
                return f"{column} {value[:80]!r} is not usable as a file name"
    return None


def cached_rows(rows: pd.DataFrame, record: SeriesRecord) -> pd.DataFrame:
    """The slices-table rows of one cached series: manifest rows + crop box + cached size.

    `slice_index` and `n_slices` are set to the cached z and depth (identical to the manifest's
    when it comes from `ichscan index`, which numbers each series 0…n−1).
    """
    return slices_table([(rows, record)])


def slices_table(parts: list[tuple[pd.DataFrame, SeriesRecord]]) -> pd.DataFrame:
    """`cached_rows` of many series at once: one concat and one assignment per added column.

    (Per-series column insertions cost ~14 ms a series in the parent, which competes for the
    CPU with the workers.)
    """
    table = pd.concat([rows for rows, _ in parts], ignore_index=True)
    depths = np.array([len(rows) for rows, _ in parts], dtype=np.int64)
    starts = np.repeat(np.cumsum(depths) - depths, depths)
    table["slice_index"] = (np.arange(len(table), dtype=np.int64) - starts).astype(np.int32)
    table["n_slices"] = np.repeat(depths, depths).astype(np.int32)
    per_series = np.array(
        [(r.crop.y0, r.crop.y1, r.crop.x0, r.crop.x1, r.height, r.width) for _, r in parts], dtype=np.int32
    ).reshape(len(parts), len(CROP_COLUMNS) + len(SIZE_COLUMNS))
    added = pd.DataFrame(np.repeat(per_series, depths, axis=0), columns=[*CROP_COLUMNS, *SIZE_COLUMNS])
    first, last = segment_columns(
        table["slice_index"].to_numpy(),
        np.repeat(np.arange(len(parts)), depths),
        table["segment"].to_numpy() if "segment" in table.columns else None,
    )
    added[SEGMENT_COLUMNS[0]], added[SEGMENT_COLUMNS[1]] = first, last
    added = pd.concat([added, _cached_spacing(table, parts, depths)], axis=1)
    kept = table.drop(columns=[column for column in added.columns if column in table.columns])
    return pd.concat([kept, added], axis=1)


def _cached_spacing(
    table: pd.DataFrame, parts: list[tuple[pd.DataFrame, SeriesRecord]], depths: np.ndarray
) -> pd.DataFrame:
    """scale: `SPACING_COLUMNS` of every row: (resampling spacing, else the manifest's pixel
    spacing) × crop box side / cached side, per axis."""
    per_series = np.array(
        [
            (r.settings.spacing or np.nan, r.crop.height / r.height, r.crop.width / r.width)
            for _, r in parts
        ],
        dtype=np.float64,
    ).reshape(len(parts), 3)
    target, row_scale, column_scale = np.repeat(per_series, depths, axis=0).T
    columns = []
    for name, scale in (("pixel_spacing_row", row_scale), ("pixel_spacing_col", column_scale)):
        original = table[name].to_numpy(np.float64) if name in table.columns else np.full(len(table), np.nan)
        columns.append(np.where(np.isnan(target), original, target) * scale)
    return pd.DataFrame(dict(zip(SPACING_COLUMNS, columns, strict=True)), dtype=np.float32)


def open_cache(cache_dir: Path, settings: CacheSettings) -> None:
    """Create the cache folders and meta.json, or check an existing cache has the same settings."""
    existing = read_settings(cache_dir)
    if existing is not None and existing != settings:
        raise ValueError(
            f"{cache_dir / META_FILE}: cache was built with size={existing.size}, "
            f"crop={existing.crop}, version={existing.version}, spacing={existing.spacing}; asked "
            f"size={settings.size}, crop={settings.crop}, version={settings.version}, "
            f"spacing={settings.spacing} (use another folder)"
        )
    (cache_dir / SERIES_DIR).mkdir(parents=True, exist_ok=True)
    remove_temporary_files(cache_dir)
    if existing is None:
        write_json(
            cache_dir / META_FILE,
            {
                "size": settings.size,
                "crop": settings.crop,
                "version": settings.version,
                "invert_monochrome1": settings.invert_monochrome1,
                "opencv_version": cv2.__version__,  # recorded in each run's input contract
            }
            | ({} if settings.spacing is None else {"spacing": settings.spacing}),  # scale
        )


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]prepare[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("slices"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def prepare_cache(
    manifest: pd.DataFrame,
    cache_dir: str | Path,
    size: int = 256,
    crop: bool = True,
    workers: int | None = None,
    progress: bool = True,
    *,
    invert_monochrome1: bool = False,
    limits: PixelLimits = DEFAULT_LIMITS,
    executor: Executor | None = None,
    spacing: float | None = None,
) -> PrepareResult:
    """Decode every series of `manifest` once into the int16 HU cache at `cache_dir`.

    `size` > 0 resizes each slice to `size`×`size` (antialiased; after the head crop when
    `crop`, else after padding the matrix to a square); `size` 0 keeps the original resolution
    (then `crop` alone decides whether the head box is cut out). Series already done are
    skipped, so an interrupted run resumes. A series with an unusable slice is not cached and
    every one of its slices is reported in `.errors`. `invert_monochrome1` repairs exports that
    stored MONOCHROME1 values inverted (`ichscan.dicom.to_hounsfield`); `limits` bound what a
    header may declare. `executor` (e.g. a Dask cluster's, `ichscan.parallel.dask_executor`) runs
    the series instead of a local pool; it is not shut down. `spacing` (mm) first resamples each
    series in-plane to that pixel spacing (`ichscan.prepare.resample`); it is part of the cache's
    settings (meta.json, resume key).

    Raises `OutputError` (disk full, permission denied on the cache, ...) and `MemoryError`:
    those stop the run instead of being recorded as skipped slices.
    """
    if size < 0:
        raise ValueError(f"size must be 0 (keep the matrix) or positive, got {size}")
    cache_dir = Path(cache_dir)
    if spacing is not None and not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be a positive number of mm, got {spacing}")
    settings = CacheSettings(
        size=int(size), crop=bool(crop), invert_monochrome1=bool(invert_monochrome1),
        spacing=None if spacing is None else float(spacing),
    )
    manifest = check_manifest(manifest)
    open_cache(cache_dir, settings)
    if workers is None:
        workers = getattr(executor, "n_workers", None) or default_workers()
    workers = max(1, int(workers))

    tables: list[tuple[pd.DataFrame, SeriesRecord]] = []
    errors: list[tuple[str, str]] = []
    rows_of: dict[str, pd.DataFrame] = {}
    todo: list[SeriesTask] = []
    skipped = 0
    for task, rows in series_tasks(manifest, cache_dir, settings, limits):
        unsafe = unsafe_id(rows)
        if unsafe is not None:
            errors.extend((path, unsafe) for path in task.paths)
            continue
        record = completed_record(
            cache_dir, task.series_instance_uid, task.sop_instance_uids, settings
        )
        if record is not None:
            tables.append((rows, record))
            skipped += 1
        else:
            rows_of[task.series_instance_uid] = rows
            todo.append(task)

    prepared = failed = 0
    total_slices = sum(len(task.paths) for task in todo)
    pool_size = min(workers, max(1, len(todo)))
    in_flight = TASKS_IN_FLIGHT_PER_WORKER * pool_size
    if executor is not None:  # scale: a cluster's round trips need a deeper queue
        in_flight = CLUSTER_TASKS_IN_FLIGHT_PER_SLOT * pool_size
    with _progress(progress) as bar:
        job = bar.add_task(f"{len(todo)} series ({skipped} already done)", total=total_slices)
        make = partial(make_executor, pool_size) if executor is None else lambda: executor  # scale: --dask seam
        for task, future in bounded_map(make, _safe_prepare_series, todo, in_flight):
            outcome = _outcome(task, future)
            rows = rows_of.pop(outcome.series_instance_uid)
            if outcome.record is not None:
                tables.append((rows, outcome.record))
                prepared += 1
            else:
                errors.extend(outcome.errors)
                failed += 1
            bar.advance(job, len(rows))

    slices = (
        slices_table(tables)
        .sort_values(["series_instance_uid", "slice_index"], kind="stable")
        .reset_index(drop=True)
        if tables
        else _empty_slices(manifest)
    )
    error_table = pd.DataFrame(errors, columns=list(ERROR_COLUMNS))
    remove_temporary_files(cache_dir)  # scale: what a killed (Dask) worker left; every task is done
    with atomic_path(cache_dir / SLICES_FILE) as tmp:
        slices.to_parquet(tmp, index=False)
    with atomic_path(cache_dir / ERRORS_FILE) as tmp:
        error_table.to_csv(tmp, index=False)
    return PrepareResult(cache_dir, slices, error_table, prepared, skipped, failed)


def _safe_prepare_series(task: SeriesTask) -> SeriesOutcome:
    """`prepare_series`, turning an unexpected failure (e.g. disk full) into per-slice errors."""
    try:
        return prepare_series(task)
    except (OutputError, MemoryError):
        raise  # the environment, not the input: the run stops
    except OSError as error:
        if error.errno in ENVIRONMENT_ERRNOS:
            raise
        reason = f"series {task.series_instance_uid} not cached: {error.strerror or error}"
        return SeriesOutcome(task.series_instance_uid, None, tuple((path, reason) for path in task.paths))
    except Exception as error:
        reason = f"series {task.series_instance_uid} not cached: {type(error).__name__}: {error}"
        return SeriesOutcome(
            task.series_instance_uid, None, tuple((path, reason) for path in task.paths)
        )


def _outcome(task: SeriesTask, future: Future[SeriesOutcome]) -> SeriesOutcome:
    """The future's outcome; a dead worker becomes an error on every slice of the series."""
    error = future.exception()
    if error is None:
        return future.result()
    if not isinstance(error, Exception) or isinstance(error, (OutputError, MemoryError)):
        raise error
    if isinstance(error, OSError) and error.errno in ENVIRONMENT_ERRNOS:
        raise error
    reason = (
        f"series {task.series_instance_uid} not cached: worker process died while preparing it "
        f"or a series running alongside ({type(error).__name__}); run prepare again to retry"
    )
    return SeriesOutcome(task.series_instance_uid, None, tuple((path, reason) for path in task.paths))


def _empty_slices(manifest: pd.DataFrame) -> pd.DataFrame:
    """A slices table with no rows but every column and dtype."""
    table = manifest.iloc[:0].copy()
    for column in (*CROP_COLUMNS, *SIZE_COLUMNS, *SEGMENT_COLUMNS):
        table[column] = pd.Series(dtype=np.int32)
    for column in SPACING_COLUMNS:
        table[column] = pd.Series(dtype=np.float32)
    return table
