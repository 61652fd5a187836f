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


def order_slices(headers: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the series rules and number the kept slices.

    Returns (kept rows with `position`, `slice_index`, `n_slices`, sorted by series then
    slice_index; errors `path, reason` of the removed files).
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

    degenerate = np.isnan(normal).any(axis=1)
    errors.append(
        _errors(
            frame.loc[degenerate],
            ErrorKind.INVALID_TAG,
            "ImageOrientationPatient cosines are parallel or zero",
        )
    )
    frame = frame.loc[~degenerate]

    duplicated = frame["image_id"].duplicated(keep=False).to_numpy()
    errors.append(
        _errors(
            frame.loc[duplicated],
            ErrorKind.DUPLICATE_IMAGE,
            "image_id " + frame.loc[duplicated, "image_id"] + " is in several files",
        )
    )
    frame = frame.loc[~duplicated]

    for rule in SERIES_RULES:
        frame, rule_errors = _majority_rule(frame, rule)
        errors.append(rule_errors)

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
    frame = frame.loc[~duplicate].drop(columns=["normal_x", "normal_y", "normal_z"])

    by_series = frame.groupby("series_instance_uid", sort=False)
    frame = frame.assign(
        slice_index=by_series.cumcount().astype(np.int32),
        n_slices=by_series["position"].transform("size").astype(np.int32),
    ).reset_index(drop=True)
    return frame, pd.concat(errors, ignore_index=True)
