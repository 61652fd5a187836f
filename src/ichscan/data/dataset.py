"""PyTorch datasets over the Hounsfield cache (``CACHE/series/<series_instance_uid>.npy``).

Items are int16 HU stacks; windowing (`ichscan.data.windows.apply_windows`) runs later on whole
batches, on the training device, so workers move 2-byte pixels and the float work is vectorised.
Series volumes are memory-mapped (``np.load(mmap_mode="r")``): only the slices an item needs are
read, and the page cache is shared by all workers.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ichscan.data.contract import to_input_grid
from ichscan.labels import LABELS, N_LABELS
from ichscan.prepare.cache import neighbour_z

SERIES_DIR = "series"


def series_path(cache_dir: str | os.PathLike[str], series_uid: str) -> Path:
    """Path of one series' HU volume in the cache layout of ARCHITECTURE.md."""
    return Path(cache_dir) / SERIES_DIR / f"{series_uid}.npy"


def read_volume_shape(path: Path) -> tuple[int, int, int]:
    """``(z, H, W)`` of a cached ``.npy`` volume from its header alone (no pixel read).

    Raises ``FileNotFoundError``/``ValueError`` naming the file when it is missing, not an
    ``.npy`` file, or not an int16 3-D volume.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: cached series volume is missing")
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    except ValueError as error:
        raise ValueError(f"{path}: not a NumPy .npy volume ({error})") from error
    if len(shape) != 3 or dtype != np.dtype(np.int16):
        raise ValueError(f"{path}: expected an int16 (z, H, W) volume, found {dtype} {shape}")
    return int(shape[0]), int(shape[1]), int(shape[2])


def labels_array(slices: pd.DataFrame) -> np.ndarray:
    """The six label columns as float32 ``(n, 6)``; all NaN when `slices` has no label columns."""
    present = [label for label in LABELS if label in slices.columns]
    if not present:
        return np.full((len(slices), N_LABELS), np.nan, dtype=np.float32)
    if len(present) != N_LABELS:
        missing = sorted(set(LABELS) - set(present))
        raise ValueError(f"slices table has only some label columns; missing {missing}")
    return slices[list(LABELS)].to_numpy(dtype=np.float32, na_value=np.nan)


class _SeriesVolumes:
    """The series volumes of one slices table: per-series paths and depths, memory-mapped lazily.

    At most `max_open` volumes stay mapped (least recently used are dropped), so the number of
    open file descriptors stays bounded however many series the table holds. Mappings are not
    pickled: every DataLoader worker opens its own.
    """

    def __init__(self, cache_dir: Path, series_uids: pd.Series, max_open: int = 64) -> None:
        codes, uniques = pd.factorize(series_uids.astype(str), sort=False)
        self.codes: np.ndarray = codes.astype(np.int64)
        self.uids: list[str] = [str(uid) for uid in uniques]
        self.paths: list[Path] = [series_path(cache_dir, uid) for uid in self.uids]
        shapes = np.array([read_volume_shape(path) for path in self.paths], dtype=np.int64)
        self.depths: np.ndarray = shapes[:, 0] if len(shapes) else np.zeros(0, dtype=np.int64)
        self.shapes: np.ndarray = shapes.reshape(-1, 3)
        self.max_open = max_open
        self._open: OrderedDict[int, np.ndarray] = OrderedDict()

    def volume(self, code: int) -> np.ndarray:
        """The memory-mapped ``(z, H, W)`` int16 volume of series `code`."""
        volume = self._open.get(code)
        if volume is None:
            # a plain ndarray view of the map: indexing skips np.memmap's Python-level __getitem__
            volume = np.load(self.paths[code], mmap_mode="r").view(np.ndarray)
            self._open[code] = volume
            if len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(code)
        return volume

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state


def _require_columns(slices: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [column for column in columns if column not in slices.columns]
    if missing:
        raise ValueError(f"slices table lacks column(s) {missing}")


class SliceDataset(Dataset[dict[str, Any]]):
    """One item per row of `slices`: the HU of that slice and its neighbours at `offsets`.

    Item `i` → ``{"hu": int16 (len(offsets), H, W), "labels": float32 (6,) (NaN when unlabelled),
    "index": i}``. Neighbour ``z = clip(slice_index + offset, first, last)`` within the slice's segment
    (`ichscan.prepare.cache.neighbour_z`; the whole series without gaps): offsets are clamped
    at the series ends, so the first slice's s−1 is itself. All ``(row, offset) → (series, z)``
    look-ups are computed once, vectorised, at construction; a row whose series file is missing or
    whose `slice_index` lies outside the cached volume raises an error naming the file.

    `size`: the network's input side when it differs from the cache's; the stack is then resized
    here, on the CPU, with `ichscan.data.contract.to_input_grid` (the one resize of the input
    contract, identical in prediction). None keeps the cached grid.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        slices: pd.DataFrame,
        offsets: Sequence[int] = (-1, 0, 1),
        max_open_series: int = 64,
        size: int | None = None,
    ) -> None:
        _require_columns(slices, ("series_instance_uid", "slice_index"))
        if not offsets:
            raise ValueError("at least one slice offset is needed")
        self.cache_dir = Path(cache_dir)
        self.slices = slices
        self.offsets: tuple[int, ...] = tuple(int(offset) for offset in offsets)
        self.size = size
        self._volumes = _SeriesVolumes(
            self.cache_dir, slices["series_instance_uid"], max_open_series
        )
        slice_index = slices["slice_index"].to_numpy()
        if pd.isna(slice_index).any():
            raise ValueError("slices table has missing slice_index values")
        slice_index = slice_index.astype(np.int64)
        depth = self._volumes.depths[self._volumes.codes]
        outside = (slice_index < 0) | (slice_index >= depth)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            code = int(self._volumes.codes[row])
            raise ValueError(
                f"{self._volumes.paths[code]}: slice_index {slice_index[row]} outside the cached "
                f"volume of {depth[row]} slices ({int(outside.sum())} row(s) affected)"
            )
        self.z: np.ndarray = neighbour_z(slices, self.offsets, depth)  # clamped to the slice's segment
        self.labels: np.ndarray = labels_array(slices)

    @property
    def series_codes(self) -> np.ndarray:
        """Per row, the position of its series in `series_uids`."""
        return self._volumes.codes

    @property
    def series_uids(self) -> list[str]:
        """The distinct series of the table, in order of first appearance."""
        return self._volumes.uids

    def __len__(self) -> int:
        return len(self.z)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume = self._volumes.volume(int(self._volumes.codes[index]))
        hu = np.ascontiguousarray(volume[self.z[index]])
        if self.size:
            hu = to_input_grid(hu, self.size)
        return {
            "hu": torch.from_numpy(hu),
            "labels": torch.tensor(self.labels[index]),
            "index": int(index),
        }


class SeriesDataset(Dataset[dict[str, Any]]):
    """One item per series of `slices` (for sequence models): its rows' slices in anatomical order.

    Item → ``{"hu": int16 (T, H, W), "labels": float32 (T, 6), "index": int64 (T,) rows of
    `slices`, "series_instance_uid": str}``, T = the series' rows in `slices` sorted by
    `slice_index`. Batch variable lengths with `collate_series`. `size`: as for `SliceDataset`.
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike[str],
        slices: pd.DataFrame,
        max_open_series: int = 8,
        size: int | None = None,
    ) -> None:
        _require_columns(slices, ("series_instance_uid", "slice_index"))
        self.size = size
        self.cache_dir = Path(cache_dir)
        self.slices = slices
        self._volumes = _SeriesVolumes(
            self.cache_dir, slices["series_instance_uid"], max_open_series
        )
        slice_index = slices["slice_index"].to_numpy().astype(np.int64)
        codes = self._volumes.codes
        bad = (slice_index < 0) | (slice_index >= self._volumes.depths[codes])
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{self._volumes.paths[codes[row]]}: slice_index {slice_index[row]} outside the "
                "cached volume"
            )
        order = np.lexsort((slice_index, codes))
        bounds = np.searchsorted(codes[order], np.arange(len(self._volumes.uids) + 1))
        self._rows: list[np.ndarray] = [order[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        self._slice_index = slice_index
        self.labels: np.ndarray = labels_array(slices)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rows = self._rows[index]
        volume = self._volumes.volume(index)
        hu = np.ascontiguousarray(volume[self._slice_index[rows]])
        if self.size:
            hu = to_input_grid(hu, self.size)
        return {
            "hu": torch.from_numpy(hu),
            "labels": torch.from_numpy(self.labels[rows]),
            "index": torch.from_numpy(rows.astype(np.int64)),
            "series_instance_uid": self._volumes.uids[index],
        }


def collate_series(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad series items to the longest: hu 0, labels NaN, index −1, plus a bool `mask` (B, T)."""
    lengths = [item["hu"].shape[0] for item in items]
    longest = max(lengths)
    height, width = items[0]["hu"].shape[1:]
    batch = len(items)
    hu = torch.zeros((batch, longest, height, width), dtype=torch.int16)
    labels = torch.full((batch, longest, N_LABELS), float("nan"), dtype=torch.float32)
    index = torch.full((batch, longest), -1, dtype=torch.int64)
    mask = torch.zeros((batch, longest), dtype=torch.bool)
    for row, (item, length) in enumerate(zip(items, lengths)):
        hu[row, :length] = item["hu"]
        labels[row, :length] = item["labels"]
        index[row, :length] = item["index"]
        mask[row, :length] = True
    return {
        "hu": hu,
        "labels": labels,
        "index": index,
        "mask": mask,
        "series_instance_uid": [item["series_instance_uid"] for item in items],
    }


def default_workers() -> int:
    """DataLoader workers: the CPUs this process may use, at most 8."""
    return min(8, len(os.sched_getaffinity(0)))


def create_loader(
    dataset: Dataset[Any],
    batch_size: int = 64,
    *,
    shuffle: bool = False,
    sampler: Sampler[int] | None = None,
    workers: int | None = None,
    drop_last: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    prefetch_factor: int = 4,
    seed: int = 0,
) -> DataLoader[Any]:
    """A DataLoader with defaults for this data: pinned memory when CUDA is present, persistent
    workers (no re-fork per epoch), deep prefetch, and a seeded generator for `shuffle`.

    `sampler` (e.g. from `ichscan.data.samplers.create_sampler`) excludes `shuffle`.
    """
    if sampler is not None and shuffle:
        raise ValueError("give either a sampler or shuffle=True, not both")
    workers = default_workers() if workers is None else workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
        generator=torch.Generator().manual_seed(seed) if shuffle else None,
    )
