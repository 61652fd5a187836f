"""Per-study triage summary from per-slice probabilities.

A study's score of label c is the maximum over its slices, ``m_c = max_s p_c(s)`` (a study is
positive when any slice is, as in `ichscan.metrics.study_level`). With the run's operating point
(`ichscan.train.operating_point.OperatingPoint`) the ``any`` score is calibrated into a
study-level probability ``ich_probability`` and ``ich_detected`` is decided at the threshold chosen
on validation data for a stated sensitivity; without one (an ensemble of different runs, a run
trained before operating points) ``ich_probability`` is empty and ``ich_detected`` is
``m_any ≥ threshold["any"]``. A subtype is reported present when its maximum reaches its
threshold. The most suspicious slices are the k with the highest p(any), ties broken by series
then slice_index.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ichscan.labels import LABELS, SUBTYPES

if TYPE_CHECKING:
    from ichscan.train.operating_point import OperatingPoint

STUDY_COLUMNS: tuple[str, ...] = (
    "study_instance_uid",
    "patient_id",
    "n_series",
    "n_slices",
    *LABELS,
    "ich_probability",
    "ich_detected",
    "subtypes_present",
    "top_slices",
)


def label_thresholds(threshold: float | Mapping[str, float]) -> dict[str, float]:
    """One threshold per label from a single float or a partial mapping (missing labels: 0.5)."""
    if isinstance(threshold, Mapping):
        unknown = set(threshold) - set(LABELS)
        if unknown:
            raise ValueError(f"unknown labels in thresholds: {sorted(unknown)}")
        values = {label: float(threshold.get(label, 0.5)) for label in LABELS}
    else:
        values = {label: float(threshold) for label in LABELS}
    for label, value in values.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"threshold for {label} must be in [0, 1], got {value}")
    return values


def top_slices(predictions: pd.DataFrame, top_k: int) -> pd.DataFrame:
    """The `top_k` rows of each study with the highest p(any), most suspicious first."""
    ordered = predictions.sort_values(
        ["study_instance_uid", "any", "series_instance_uid", "slice_index"],
        ascending=[True, False, True, True],
        kind="stable",
    )
    return ordered.groupby("study_instance_uid", sort=False).head(top_k)


def summarize_studies(
    predictions: pd.DataFrame,
    threshold: float | Mapping[str, float] = 0.5,
    top_k: int = 5,
    operating_point: OperatingPoint | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Study table (one row per study, highest p(any) first) and the same as JSON-ready records.

    `predictions` has one row per slice with `study_instance_uid, series_instance_uid,
    patient_id, image_id, slice_index` and the six probability columns. `operating_point`
    decides ``ich_detected`` and gives ``ich_probability`` (module docstring).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be ≥ 1, got {top_k}")
    thresholds = label_thresholds(threshold)
    if predictions.empty:
        return pd.DataFrame(columns=list(STUDY_COLUMNS)), []
    grouped = predictions.groupby("study_instance_uid", sort=True)
    table = grouped[list(LABELS)].max()
    table.insert(0, "n_slices", grouped.size())
    table.insert(0, "n_series", grouped["series_instance_uid"].nunique())
    table.insert(0, "patient_id", grouped["patient_id"].first())
    table = table.reset_index()
    subtype_max = table[list(SUBTYPES)].to_numpy()
    present = subtype_max >= np.array([thresholds[s] for s in SUBTYPES])[None, :]
    scores = table["any"].to_numpy(dtype=np.float64)
    if operating_point is None:
        table["ich_probability"] = np.nan
        table["ich_detected"] = scores >= thresholds["any"]
    else:
        table["ich_probability"] = operating_point.calibrate(scores)
        table["ich_detected"] = operating_point.detect(scores)
    names = np.array(SUBTYPES, dtype=object)
    present_lists = [list(names[row]) for row in present]
    table["subtypes_present"] = [";".join(p) for p in present_lists]

    top = top_slices(predictions, top_k)
    top_records: dict[str, list[dict[str, Any]]] = {
        str(uid): [
            {
                "image_id": str(r.image_id),
                "series_instance_uid": str(r.series_instance_uid),
                "slice_index": int(r.slice_index),
                "probability_any": float(r.any),
            }
            for r in group.itertuples(index=False)
        ]
        for uid, group in top.groupby("study_instance_uid", sort=False)
    }
    table["top_slices"] = [
        "|".join(
            f"{s['image_id']}@{s['slice_index']}:{s['probability_any']:.4f}" for s in top_records[str(uid)]
        )
        for uid in table["study_instance_uid"]
    ]
    order = np.lexsort((table["study_instance_uid"].to_numpy(), -table["any"].to_numpy()))
    table = table.iloc[order].reset_index(drop=True)
    present_by_study = dict(zip(table["study_instance_uid"], table["subtypes_present"]))

    records = [
        {
            "study_instance_uid": str(row.study_instance_uid),
            "patient_id": str(row.patient_id),
            "n_series": int(row.n_series),
            "n_slices": int(row.n_slices),
            "probability_any": float(row.any),
            "ich_probability": None if pd.isna(row.ich_probability) else float(row.ich_probability),
            "ich_detected": bool(row.ich_detected),
            "max_probability": {s: float(getattr(row, s)) for s in SUBTYPES},
            "subtypes_present": [s for s in present_by_study[row.study_instance_uid].split(";") if s],
            "suspicious_slices": top_records[str(row.study_instance_uid)],
        }
        for row in table.itertuples(index=False)
    ]
    return table[list(STUDY_COLUMNS)], records
