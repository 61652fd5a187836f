"""One series → one cached HU volume: decode each slice once, crop, resize, write, mark done.

This is the unit of work of a prepare worker. It holds one series in memory at a time and returns
only small metadata (never the volume), so the parent's memory does not grow with the data.

A slice that cannot be used drops its whole series: the cache promises z = slice_index with true
neighbours at z ± 1, and a hole would silently make "the previous slice" two slices away. Every
slice of a dropped series is reported: the bad one with its own reason, the others naming it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from numpy.typing import NDArray

from ichscan.dicom.hounsfield import to_hounsfield
from ichscan.files import atomic_path
from ichscan.prepare.cache import (
    CacheSettings,
    SeriesRecord,
    series_path,
    write_sidecar,
)
from ichscan.prepare.crop import CropBox, crop, full_box, head_box, resize_hounsfield


@dataclass(frozen=True)
class SeriesTask:
    """The slices of one series in anatomical order (z = position in these tuples)."""

    series_instance_uid: str
    paths: tuple[str, ...]
    sop_instance_uids: tuple[str, ...]
    cache_dir: Path
    settings: CacheSettings


@dataclass(frozen=True)
class SeriesOutcome:
    """What a worker reports back: the sidecar when cached, else one (path, reason) per slice."""

    series_instance_uid: str
    record: SeriesRecord | None
    errors: tuple[tuple[str, str], ...]


def read_volume(task: SeriesTask) -> tuple[NDArray[np.int16] | None, list[tuple[str, str]]]:
    """Decode every slice of `task` once into a ``(z, rows, columns)`` HU volume.

    Returns ``(volume, [])`` or ``(None, failures)`` with one (path, reason) per unusable slice.
    """
    volume: NDArray[np.int16] | None = None
    failures: list[tuple[str, str]] = []
    for z, (path, sop_uid) in enumerate(zip(task.paths, task.sop_instance_uids, strict=True)):
        try:
            with warnings.catch_warnings():  # oddities pydicom tolerates do not change the HU;
                warnings.simplefilter("ignore")  # what does is raised and reported below
                ds = pydicom.dcmread(path)
                found_uid = str(ds.get("SOPInstanceUID", ""))
                if found_uid != sop_uid:
                    raise ValueError(
                        f"SOPInstanceUID {found_uid} differs from the manifest's {sop_uid}"
                    )
                matrix = (int(ds.Rows), int(ds.Columns))
                if volume is not None and matrix != volume.shape[1:]:
                    raise ValueError(f"matrix {matrix} differs from the series' {volume.shape[1:]}")
                # decoded straight into the volume: no per-slice copy
                hounsfield = to_hounsfield(ds, out=None if volume is None else volume[z])
        except Exception as error:  # any unreadable file is reported, never fatal
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            failures.append((path, reason))
            continue
        if volume is None:
            volume = np.empty((len(task.paths), *hounsfield.shape), dtype=np.int16)
            volume[z] = hounsfield
    if failures:
        return None, failures
    return volume, failures


def dropped_series_errors(
    task: SeriesTask, failures: list[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """One error per slice of a dropped series: the failures, and the rest naming the first one."""
    failed = dict(failures)
    first_path, first_reason = failures[0]
    because = (
        f"series {task.series_instance_uid} dropped: {len(failures)} of {len(task.paths)} slices "
        f"unusable (first: {first_path}: {first_reason})"
    )
    return tuple((path, failed.get(path, because)) for path in task.paths)


def crop_box_for(volume: NDArray[np.int16], settings: CacheSettings) -> CropBox:
    """The box cached for a series: the head box, the squared matrix, or the matrix as is."""
    _, rows, columns = volume.shape
    if settings.crop:
        return head_box(volume)
    return full_box(rows, columns, square=settings.size > 0)


def prepare_series(task: SeriesTask) -> SeriesOutcome:
    """Decode, crop, resize and cache one series; never raises for bad input files."""
    volume, failures = read_volume(task)
    if volume is None:
        if not failures:
            failures = [(path, "no slices") for path in task.paths]
        return SeriesOutcome(task.series_instance_uid, None, dropped_series_errors(task, failures))
    box = crop_box_for(volume, task.settings)
    cropped = crop(volume, box)
    del volume
    side = task.settings.size
    cached = resize_hounsfield(cropped, side, side) if side > 0 else cropped
    del cropped
    target = series_path(task.cache_dir, task.series_instance_uid)
    with atomic_path(target) as tmp:
        np.save(tmp, np.ascontiguousarray(cached, dtype=np.int16), allow_pickle=False)
    record = SeriesRecord(
        series_instance_uid=task.series_instance_uid,
        sop_instance_uids=task.sop_instance_uids,
        crop=box,
        height=int(cached.shape[1]),
        width=int(cached.shape[2]),
        settings=task.settings,
    )
    write_sidecar(task.cache_dir, record)
    return SeriesOutcome(task.series_instance_uid, record, ())
