"""Batches of neighbour-slice HU stacks read series by series from the cache (every inference loop).

Each series volume is memory-mapped once and all its slices' neighbour stacks are gathered with one
fancy index: ``stack[i, j] = volume[clip(slice_index_i + offset_j, 0, z − 1)]`` (offsets clamp at
the series ends, as in `ichscan.data.SliceDataset`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd


def neighbour_stacks(
    volume: np.ndarray,
    slice_index: np.ndarray,
    offsets: Sequence[int],
    first: np.ndarray | None = None,
    last: np.ndarray | None = None,
) -> np.ndarray:
    """int16 (n, len(offsets), H, W) stacks of `volume` (z, H, W) around each `slice_index`,
    clamped to ``[first, last]`` per slice (its segment: never across a gap) or the series ends."""
    z = volume.shape[0]
    low = 0 if first is None else np.asarray(first, dtype=np.int64)[:, None]
    high = z - 1 if last is None else np.asarray(last, dtype=np.int64)[:, None]
    take = np.clip(slice_index[:, None] + np.asarray(offsets, dtype=np.int64)[None, :], low, high)
    return np.asarray(volume[take], dtype=np.int16)


def iter_hu_batches(
    cache_dir: Path,
    slices: pd.DataFrame,
    offsets: Sequence[int],
    batch_size: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield `(rows, hu)`: positions into `slices` and their int16 (B, k, H, W) stacks.

    Batches fill across series boundaries, so every batch but the last holds `batch_size` slices.
    """
    from ichscan.prepare import read_series
    from ichscan.prepare.cache import SEGMENT_COLUMNS

    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    pending_rows: list[np.ndarray] = []
    pending_hu: list[np.ndarray] = []
    n_pending = 0
    positions = np.arange(len(slices))
    series_of_row = slices["series_instance_uid"].to_numpy()
    slice_index = slices["slice_index"].to_numpy(dtype=np.int64)
    segmented = all(column in slices.columns for column in SEGMENT_COLUMNS)
    first = slices[SEGMENT_COLUMNS[0]].to_numpy(np.int64) if segmented else None
    last = slices[SEGMENT_COLUMNS[1]].to_numpy(np.int64) if segmented else None
    for uid, rows in pd.Series(positions).groupby(series_of_row, sort=False):
        rows_array = rows.to_numpy()
        volume = read_series(cache_dir, str(uid), mmap=True)
        pending_rows.append(rows_array)
        pending_hu.append(
            neighbour_stacks(
                volume,
                slice_index[rows_array],
                offsets,
                None if first is None else first[rows_array],
                None if last is None else last[rows_array],
            )
        )
        n_pending += len(rows_array)
        while n_pending >= batch_size:
            all_rows = np.concatenate(pending_rows)
            all_hu = np.concatenate(pending_hu)
            yield all_rows[:batch_size], all_hu[:batch_size]
            pending_rows, pending_hu = [all_rows[batch_size:]], [all_hu[batch_size:]]
            n_pending -= batch_size
    if n_pending:
        yield np.concatenate(pending_rows), np.concatenate(pending_hu)
