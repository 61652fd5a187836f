"""One series → one cached HU volume: decode each slice once, crop, resize, write, mark done.

This is the unit of work of a prepare worker. It holds one series in memory at a time and returns
only small metadata (never the volume), so the parent's memory does not grow with the data.

A slice that cannot be used drops its whole series: the cache promises z = slice_index with true
neighbours at z ± 1, and a hole would silently make "the previous slice" two slices away. Every
slice of a dropped series is reported: the bad one with its own reason, the others naming it.
"""

from __future__ import annotations

import errno
import math
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ichscan.dicom.hounsfield import (
    hounsfield_from_stored,
    keep_stored_bits,
    to_hounsfield,
)
from ichscan.dicom.limits import DEFAULT_LIMITS, PixelLimits
from ichscan.dicom.reader import read_dataset
from ichscan.files import atomic_path
from ichscan.nifti.volume import is_nifti, read_series_volume
from ichscan.prepare.cache import (
    CacheSettings,
    SeriesRecord,
    series_path,
    write_sidecar,
)
from ichscan.prepare.crop import CropBox, crop, crop_and_resize, full_box, head_box
from ichscan.prepare.fastread import FastSlice, NotFast, read_fast
from ichscan.prepare.resample import SpacingError, resample_in_plane

HOUNSFIELD_CHUNK_SLICES = 16  # stored words → HU this many slices at a time (bounded temporaries)


class OutputError(OSError):
    """The cache cannot be written (disk full, quota, permission denied, read-only): the whole
    run stops with this one-line message; it is never recorded as a skipped slice."""


# Errors of the environment, not of one input file: they abort the run wherever they happen.
ENVIRONMENT_ERRNOS: frozenset[int] = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
)


@dataclass(frozen=True)
class SeriesTask:
    """The slices of one series in anatomical order (z = position in these tuples)."""

    series_instance_uid: str
    paths: tuple[str, ...]
    sop_instance_uids: tuple[str, ...]
    cache_dir: Path
    settings: CacheSettings
    limits: PixelLimits = DEFAULT_LIMITS
    pixel_spacing: tuple[float, float] | None = None  # scale: (row, column) mm, for settings.spacing


@dataclass(frozen=True)
class SeriesOutcome:
    """What a worker reports back: the sidecar when cached, else one (path, reason) per slice."""

    series_instance_uid: str
    record: SeriesRecord | None
    errors: tuple[tuple[str, str], ...]


def read_volume(task: SeriesTask) -> tuple[NDArray[np.int16] | None, list[tuple[str, str]]]:
    """Decode every slice of `task` once into a ``(z, rows, columns)`` HU volume.

    Uncompressed 16-bit little-endian slices (`ichscan.prepare.fastread`) are copied as stored
    words straight into the volume and converted to HU afterwards, in place and vectorised over
    all slices that share one pixel description and rescale (normally the whole series); every
    other file goes through pydicom and `to_hounsfield` as before. Same HU either way.

    Returns ``(volume, [])`` or ``(None, failures)`` with one (path, reason) per unusable slice.
    """
    volume: NDArray[np.int16] | None = None
    failures: list[tuple[str, str]] = []
    invert = task.settings.invert_monochrome1
    # layout + rescale + inversion → z of the slices held as stored words
    stored_as: dict[tuple[int, int, float, float, bool], list[int]] = {}
    for z, (path, sop_uid) in enumerate(zip(task.paths, task.sop_instance_uids, strict=True)):
        fast = _read_fast_or_none(path, task.limits)
        if (
            fast is not None
            and fast.sop_instance_uid == sop_uid
            and (volume is None or (fast.rows, fast.columns) == volume.shape[1:])
        ):
            if failures:  # the series is dropped anyway: only look for more failures
                continue
            if volume is None:
                volume = np.empty((len(task.paths), fast.rows, fast.columns), dtype=np.int16)
            np.copyto(volume[z].view(np.uint16), fast.pixels)
            key = (
                fast.bits_stored,
                fast.pixel_representation,
                fast.slope,
                fast.intercept,
                invert and fast.photometric_interpretation == "MONOCHROME1",
            )
            stored_as.setdefault(key, []).append(z)
            continue
        try:
            with warnings.catch_warnings():  # oddities pydicom tolerates do not change the HU;
                warnings.simplefilter("ignore")  # what does is raised and reported below
                ds = read_dataset(path, task.limits)  # only up to the end of Pixel Data
                found_uid = str(ds.get("SOPInstanceUID", ""))
                if found_uid != sop_uid:
                    raise ValueError(
                        f"SOPInstanceUID {found_uid} differs from the manifest's {sop_uid}"
                    )
                matrix = (int(ds.Rows), int(ds.Columns))
                if volume is not None and matrix != volume.shape[1:]:
                    raise ValueError(f"matrix {matrix} differs from the series' {volume.shape[1:]}")
                # decoded straight into the volume: no per-slice copy
                hounsfield = to_hounsfield(
                    ds,
                    invert_monochrome1=invert,
                    out=None if volume is None else volume[z],
                    limits=task.limits,
                )
        except MemoryError:
            raise  # the machine, not the file: the run stops
        except OSError as error:
            if error.errno in ENVIRONMENT_ERRNOS:
                raise
            failures.append((path, error.strerror or str(error)))
            continue
        except Exception as error:  # any unreadable file is reported, never fatal
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            failures.append((path, reason))
            continue
        if volume is None:
            volume = np.empty((len(task.paths), *hounsfield.shape), dtype=np.int16)
            volume[z] = hounsfield
    if failures:
        return None, failures
    if volume is not None:
        for (bits_stored, pixel_representation, slope, intercept, inverted), zs in stored_as.items():
            for start, stop in _chunks(zs, HOUNSFIELD_CHUNK_SLICES):
                _stored_words_to_hounsfield(
                    volume[start:stop], bits_stored, pixel_representation, slope, intercept, inverted
                )
    return volume, failures


def _chunks(indices: list[int], longest: int) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` runs of consecutive `indices` (ascending), at most `longest` long."""
    start = previous = indices[0]
    for index in indices[1:]:
        if index != previous + 1 or index - start >= longest:
            yield start, previous + 1
            start = index
        previous = index
    yield start, previous + 1


def _read_fast_or_none(path: str, limits: PixelLimits) -> FastSlice | None:
    try:
        return read_fast(path, limits)
    except (NotFast, OSError, ValueError, struct.error):  # pydicom then reads it (or says why not)
        return None


def _stored_words_to_hounsfield(
    words: NDArray[np.int16],
    bits_stored: int,
    pixel_representation: int,
    slope: float,
    intercept: float,
    invert: bool = False,
) -> None:
    """Turn raw 16-bit stored words (held in an int16 array) into HU, in place.

    Exactly `ichscan.dicom.hounsfield.to_hounsfield`'s arithmetic: the stored bits kept (masked
    or sign-extended, `keep_stored_bits`), then `hounsfield_from_stored`.
    """
    signed = pixel_representation == 1
    stored = words if signed else words.view(np.uint16)
    keep_stored_bits(stored, bits_stored, signed, out=stored)
    hounsfield_from_stored(
        stored,
        slope=slope,
        intercept=intercept,
        bits_stored=bits_stored,
        pixel_representation=pixel_representation,
        invert=invert,
        out=words,
    )


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
    nifti = is_nifti(task.paths[0])  # scale: a NIfTI volume is one series, read once
    volume, failures = read_series_volume(task.paths) if nifti else read_volume(task)
    if volume is None:
        if not failures:
            failures = [(path, "no slices") for path in task.paths]
        return SeriesOutcome(task.series_instance_uid, None, dropped_series_errors(task, failures))
    if task.settings.spacing is not None:  # scale: physical resampling before crop and resize
        try:
            volume = resample_in_plane(volume, task.pixel_spacing or (math.nan, math.nan), task.settings.spacing)
        except SpacingError as error:
            return SeriesOutcome(task.series_instance_uid, None, tuple((path, str(error)) for path in task.paths))
    box = crop_box_for(volume, task.settings)
    side = task.settings.size
    cached = crop_and_resize(volume, box, side, side) if side > 0 else crop(volume, box)
    del volume
    target = series_path(task.cache_dir, task.series_instance_uid)
    record = SeriesRecord(
        series_instance_uid=task.series_instance_uid,
        sop_instance_uids=task.sop_instance_uids,
        crop=box,
        height=int(cached.shape[1]),
        width=int(cached.shape[2]),
        settings=task.settings,
    )
    try:
        with atomic_path(target) as tmp:
            np.save(tmp, np.ascontiguousarray(cached, dtype=np.int16), allow_pickle=False)
        write_sidecar(task.cache_dir, record)
    except OSError as error:  # the output, not an input: disk full, permission denied, ...
        raise OutputError(error.errno, f"cannot write {target}: {error.strerror or error}") from error
    return SeriesOutcome(task.series_instance_uid, record, ())
