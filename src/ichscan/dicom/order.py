"""Slice order within each series, and the series-level checks that decide which slices are kept.

Geometry (DICOM C.7.6.2.1.1): with row cosines r and column cosines c from
ImageOrientationPatient, the slice normal is n = (r × c) / |r × c| and a slice's position along it
is p = IPP · n (mm). `slice_index` ranks p ascending within the series (anatomical order), never
file names or InstanceNumber.

Series rules, applied in this order on the files whose headers were readable; each rule's files
go to the error table with the rule named, and later rules see only the files still kept:

1. degenerate orientation: |r × c| < 1e-6 (the cosines do not span a plane): that file.
2. duplicate image: several files share one `image_id` (the label join key): every such file,
   since none of them can be picked without guessing.
3. inconsistent series: files of one series disagree on study or patient; mixed matrix: on
   (rows, columns); mixed orientation: on the normal (rounded to 0.01): the files outside the
   series' most frequent value are reported. When two values tie for most frequent, every file of
   the series is reported (no majority to trust).
4. duplicate position: slices of one series closer than `DUPLICATE_POSITION_MM` along the
   normal: every file of such a cluster is reported (which copy is right cannot be known).

Fallback order: a series where some slice lacks ImagePositionPatient is ordered by SliceLocation
(mm) when every slice has one, else by InstanceNumber (× SliceThickness when known), and
`ordered_by` says which; without either, its files are reported (`missing tag`).

Gaps: a series that lost a slice (a removed file lay between two kept ones, or the step between
neighbours exceeds `GAP_FACTOR` × the series' median step) is split into segments: `segment`
numbers them 0, 1, … along the series. The 2.5D neighbours of a slice never cross a segment
boundary (`ichscan.prepare.cache.segment_bounds`), and `series_warnings` reports every gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

from ichscan.dicom.headers import ErrorKind, error_frame, header_arrays

DUPLICATE_POSITION_MM: Final[float] = 0.01
NORMAL_DECIMALS: Final[int] = 2
GAP_FACTOR: Final[float] = 1.5  # a step this much larger than the series' median step is a gap
ORDERED_BY: Final[tuple[str, ...]] = ("position", "slice_location", "instance_number")


def slice_normals(orientation: np.ndarray) -> np.ndarray:
    """Unit slice normals ``(n, 3)`` = row × column cosines of ImageOrientationPatient ``(n, 6)``.

    Rows whose cross product is (near) zero come back as NaN.
    """
    orientation = np.asarray(orientation, dtype=np.float64).reshape(-1, 6)
    normal = np.cross(orientation[:, :3], orientation[:, 3:])
    norm = np.linalg.norm(normal, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 1e-6, normal / norm, np.nan)


def slice_positions(position: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Position along the slice normal, ``IPP · n`` (mm), for ``(n, 3)`` IPP and ``(n, 6)`` IOP."""
    normal = slice_normals(orientation)
    return np.einsum("ij,ij->i", np.asarray(position, dtype=np.float64).reshape(-1, 3), normal)


def _errors(selected: pd.DataFrame, kind: ErrorKind, details: pd.Series | str) -> pd.DataFrame:
    """Error rows for the `selected` files: reason `"<kind>: <detail>"`."""
    prefix = f"{kind.value}: "
    reasons = (
        prefix + details if isinstance(details, pd.Series) else [prefix + details] * len(selected)
    )
    return error_frame(zip(selected["path"], reasons))


def _majority(series_code: np.ndarray, key_code: np.ndarray) -> np.ndarray:
    """Per row, its series' single most frequent `key_code`, or −1 where two codes tie.

    Codes are non-negative integers; counting is one `np.unique` over (series, key) pairs.
    """
    n_series = int(series_code.max(initial=-1)) + 1
    width = np.int64(key_code.max(initial=-1)) + 1
    pairs, counts = np.unique(series_code.astype(np.int64) * width + key_code, return_counts=True)
    pair_series, pair_key = pairs // width, pairs % width
    top = np.zeros(n_series, dtype=np.int64)
    np.maximum.at(top, pair_series, counts)
    is_top = counts == top[pair_series]
    n_top = np.bincount(pair_series[is_top], minlength=n_series)
    majority = np.full(n_series, -1, dtype=np.int64)
    majority[pair_series[is_top]] = pair_key[is_top]
    majority[n_top != 1] = -1
    return majority[series_code]


def _majority_rule(frame: pd.DataFrame, rule: SeriesRule) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the files holding their series' majority value of `rule.columns`; report the others."""
    series_code = frame.groupby("series_instance_uid", sort=False).ngroup().to_numpy()
    key_code = frame.groupby(list(rule.columns), sort=False).ngroup().to_numpy()
    expected = _majority(series_code, key_code)
    bad = key_code != expected
    if not bad.any():
        return frame, _errors(frame.iloc[:0], rule.kind, "")
    text = rule.describe(frame).to_numpy(dtype=object)  # only built when a file breaks the rule
    example_row = pd.Series(np.arange(len(key_code))).groupby(key_code).first().to_numpy()
    majority_text = text[example_row[np.maximum(expected[bad], 0)]]
    detail = np.where(
        expected[bad] >= 0,
        f"{rule.what} " + text[bad] + "; series majority is " + majority_text,
        f"{rule.what} " + text[bad] + "; no majority in the series",
    )
    return frame.loc[~bad], _errors(frame.loc[bad], rule.kind, pd.Series(detail, dtype=str))


@dataclass(frozen=True)
class SeriesRule:
    """Files of one series must agree on `columns`; `describe` prints a row's value."""

    kind: ErrorKind
    what: str
    columns: tuple[str, ...]
    describe: Callable[[pd.DataFrame], pd.Series]


SERIES_RULES: Final[tuple[SeriesRule, ...]] = (
    SeriesRule(
        ErrorKind.INCONSISTENT_SERIES,
        "study / patient",
        ("study_instance_uid", "patient_id"),
        lambda f: f["study_instance_uid"] + " / " + f["patient_id"],
    ),
    SeriesRule(
        ErrorKind.MIXED_MATRIX,
        "matrix",
        ("rows", "columns"),
        lambda f: f["rows"].astype(str) + "x" + f["columns"].astype(str),
    ),
    SeriesRule(
        ErrorKind.MIXED_ORIENTATION,
        "slice normal",
        ("normal_x", "normal_y", "normal_z"),
        lambda f: (
            "("
            + f["normal_x"].astype(str)
            + ", "
            + f["normal_y"].astype(str)
            + ", "
            + f["normal_z"].astype(str)
            + ")"
        ),
    ),
)


def _fallback_positions(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position, ordered_by, unorderable) for every row: IPP · n where every slice of the series
    has IPP, else SliceLocation, else InstanceNumber (× SliceThickness when finite); rows of a
    series with none of these are `unorderable`."""
    series = frame["series_instance_uid"]
    has_ipp = frame[["ipp_x", "ipp_y", "ipp_z"]].notna().all(axis=1)
    all_ipp = has_ipp.groupby(series).transform("all").to_numpy()
    all_location = frame["slice_location"].notna().groupby(series).transform("all").to_numpy()
    all_number = frame["instance_number"].notna().groupby(series).transform("all").to_numpy()
    thickness = frame["slice_thickness"].astype("float64").to_numpy()
    by_number = frame["instance_number"].to_numpy(np.float64) * np.where(
        np.isfinite(thickness) & (thickness > 0), thickness, 1.0
    )
    position = np.where(
        all_ipp,
        frame["position"].to_numpy(np.float64),
        np.where(all_location, frame["slice_location"].to_numpy(np.float64), by_number),
    )
    ordered_by = np.where(
        all_ipp, ORDERED_BY[0], np.where(all_location, ORDERED_BY[1], ORDERED_BY[2])
    ).astype(object)
    unorderable = ~all_ipp & ~all_location & ~all_number
    return position, ordered_by, unorderable


def _segments(kept: pd.DataFrame, removed: pd.DataFrame) -> np.ndarray:
    """Segment number of every kept row (sorted by series, position): a boundary before a slice
    when a removed file of its series lay between it and the previous slice, or when its step
    exceeds `GAP_FACTOR` × the series' median step."""
    series = kept["series_instance_uid"].to_numpy()
    position = kept["position"].to_numpy(np.float64)
    new_series = np.ones(len(kept), dtype=bool)
    new_series[1:] = series[1:] != series[:-1]
    step = np.diff(position, prepend=np.nan)
    step[new_series] = np.nan
    median = pd.Series(step).groupby(series).transform("median").to_numpy()
    with np.errstate(invalid="ignore"):
        boundary = step > GAP_FACTOR * median
    removed = removed[np.isfinite(removed["position"].to_numpy(np.float64))]
    if len(removed):
        starts = np.flatnonzero(new_series)
        ends = np.append(starts[1:], len(kept))
        first_row = dict(zip(series[starts], zip(starts, ends)))
        for uid, lost in removed.groupby("series_instance_uid", sort=False)["position"]:
            if uid not in first_row:
                continue
            start, end = first_row[uid]
            kept_positions = position[start:end]
            for value in lost.to_numpy(np.float64):
                after = int(np.searchsorted(kept_positions, value + DUPLICATE_POSITION_MM))
                before = int(np.searchsorted(kept_positions, value - DUPLICATE_POSITION_MM))
                if before == after and 0 < after < len(kept_positions):  # strictly between two
                    boundary[start + after] = True
    boundary[new_series] = False
    return pd.Series(boundary.astype(np.int32)).groupby(series).cumsum().to_numpy(np.int32)


def series_warnings(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per series with a fallback order or a gap: ``series_instance_uid, warning``."""
    rows: list[tuple[str, str]] = []
    if "ordered_by" in manifest.columns:
        fallback = manifest[manifest["ordered_by"] != ORDERED_BY[0]]
        for uid, group in fallback.groupby("series_instance_uid", sort=False):
            what = "SliceLocation" if group["ordered_by"].iloc[0] == "slice_location" else "InstanceNumber"
            rows.append((str(uid), f"ordered by {what}: ImagePositionPatient missing on some slices"))
    if "segment" in manifest.columns:
        gapped = manifest[manifest.groupby("series_instance_uid")["segment"].transform("max") > 0]
        for uid, group in gapped.groupby("series_instance_uid", sort=False):
            position = group["position"].to_numpy(np.float64)
            starts = np.flatnonzero(np.diff(group["segment"].to_numpy()) > 0) + 1
            steps = np.diff(position)
            median = float(np.median(steps)) if len(steps) else float("nan")
            where = ", ".join(
                f"{position[k] - position[k - 1]:.2f} mm between slices {k - 1} and {k}" for k in starts
            )
            warning = (
                f"gap: {len(starts)} hole(s) ({where}; median step {median:.2f} mm); "
                "2.5D neighbours do not cross them"
            )
            rows.append((str(uid), warning))
    return pd.DataFrame(rows, columns=["series_instance_uid", "warning"]).astype(str)


def order_slices(headers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the series rules and number the kept slices.

    Returns (kept rows with `position`, `slice_index`, `n_slices`, `segment`, `ordered_by`,
    sorted by series then slice_index; errors `path, reason` of the removed files).
    """
    ipp, iop = header_arrays(headers)
    normal = slice_normals(iop)
    rounded = np.round(normal, NORMAL_DECIMALS) + 0.0  # + 0.0: −0 becomes 0
    frame = headers.assign(
        position=np.einsum("ij,ij->i", ipp, normal),
        normal_x=rounded[:, 0],
        normal_y=rounded[:, 1],
        normal_z=rounded[:, 2],
    )
    errors: list[pd.DataFrame] = []
    removed: list[pd.DataFrame] = []

    degenerate = np.isnan(normal).any(axis=1)
    errors.append(
        _errors(
            frame.loc[degenerate],
            ErrorKind.INVALID_TAG,
            "ImageOrientationPatient cosines are parallel or zero",
        )
    )
    frame = frame.loc[~degenerate]
    position, ordered_by, unorderable = _fallback_positions(frame)
    frame = frame.assign(position=position, ordered_by=ordered_by)
    errors.append(
        _errors(
            frame.loc[unorderable],
            ErrorKind.MISSING_TAG,
            "ImagePositionPatient (and neither SliceLocation nor InstanceNumber on every slice of the series)",
        )
    )
    frame = frame.loc[~unorderable]

    duplicated = frame["image_id"].duplicated(keep=False).to_numpy()
    errors.append(
        _errors(
            frame.loc[duplicated],
            ErrorKind.DUPLICATE_IMAGE,
            "image_id " + frame.loc[duplicated, "image_id"] + " is in several files",
        )
    )
    removed.append(frame.loc[duplicated, ["series_instance_uid", "position"]])
    frame = frame.loc[~duplicated]

    for rule in SERIES_RULES:
        before = frame
        frame, rule_errors = _majority_rule(frame, rule)
        errors.append(rule_errors)
        removed.append(before.loc[~before.index.isin(frame.index), ["series_instance_uid", "position"]])

    frame = frame.sort_values(["series_instance_uid", "position", "path"], kind="stable")
    gap = frame.groupby("series_instance_uid", sort=False)["position"].diff().abs()
    close_to_previous = (gap < DUPLICATE_POSITION_MM).to_numpy()
    duplicate = close_to_previous | np.append(close_to_previous[1:], False)
    errors.append(
        _errors(
            frame.loc[duplicate],
            ErrorKind.DUPLICATE_POSITION,
            "another slice of the series is at "
            + frame.loc[duplicate, "position"].map("{:.3f}".format).astype(str)
            + " mm",
        )
    )
    removed.append(frame.loc[duplicate, ["series_instance_uid", "position"]])
    frame = frame.loc[~duplicate].drop(columns=["normal_x", "normal_y", "normal_z"])

    by_series = frame.groupby("series_instance_uid", sort=False)
    frame = frame.assign(
        slice_index=by_series.cumcount().astype(np.int32),
        n_slices=by_series["position"].transform("size").astype(np.int32),
        segment=_segments(frame, pd.concat(removed, ignore_index=True)),
    ).reset_index(drop=True)
    return frame, pd.concat(errors, ignore_index=True)
