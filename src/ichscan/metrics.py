"""Metrics of ICH detection, used by training, evaluation and reports.

All functions take ``(n, 6)`` arrays (or DataFrames) in `ichscan.labels.LABELS` order: `y_true`
0/1 with NaN for unlabelled images, `y_prob` probabilities. Rows with any NaN label are excluded
explicitly (`summarize` reports how many); a NaN or out-of-range probability is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_auc_score

from ichscan.labels import LABEL_WEIGHTS, LABELS, N_LABELS

PROB_COLUMNS: Final[tuple[str, ...]] = tuple(f"prob_{label}" for label in LABELS)
"""Default probability column names when labels and probabilities share one table."""

ArrayLike = np.ndarray | pd.DataFrame | Sequence[Sequence[float]]
Thresholds = float | Sequence[float] | np.ndarray | Mapping[str, float]


def _as_matrix(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != N_LABELS:
        raise ValueError(f"{name} must have shape (n, {N_LABELS}), got {array.shape}")
    return array


def _checked(y_true: ArrayLike, y_prob: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies with the unlabelled rows (any NaN label) removed."""
    truth = _as_matrix(y_true, "y_true")
    prob = _as_matrix(y_prob, "y_prob")
    if truth.shape != prob.shape:
        raise ValueError(f"y_true {truth.shape} and y_prob {prob.shape} differ in shape")
    if np.isnan(prob).any():
        raise ValueError(f"y_prob has {int(np.isnan(prob).any(axis=1).sum())} row(s) with NaN")
    if ((prob < 0) | (prob > 1)).any():
        raise ValueError("y_prob has values outside [0, 1]")
    labelled = labelled_rows(truth)
    truth, prob = truth[labelled], prob[labelled]
    if not np.isin(truth, (0.0, 1.0)).all():
        raise ValueError("y_true must hold 0, 1 or NaN")
    return truth, prob


def labelled_rows(y_true: ArrayLike) -> np.ndarray:
    """Boolean mask of rows whose six labels are all present (no NaN)."""
    return ~np.isnan(_as_matrix(y_true, "y_true")).any(axis=1)


def binary_log_loss(y_true: np.ndarray, y_prob: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Element-wise ``−[y log p + (1 − y) log(1 − p)]`` with ``p`` clipped to ``[eps, 1 − eps]``."""
    p = np.clip(y_prob, eps, 1.0 - eps)
    return -(y_true * np.log(p) + (1.0 - y_true) * np.log1p(-p))


def weighted_log_loss(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    eps: float = 1e-7,
    weights: Sequence[float] = LABEL_WEIGHTS,
) -> float:
    """The RSNA 2019 metric: weighted mean of the per-(image, label) binary log losses.

    ``L = Σ_i Σ_k w_k ℓ_ik / (n Σ_k w_k)`` with ``w = (2, 1, 1, 1, 1, 1)`` (`any` counts twice),
    i.e. the mean over images of ``(2 ℓ_any + Σ_subtypes ℓ) / 7``.
    """
    truth, prob = _checked(y_true, y_prob)
    if len(truth) == 0:
        return float("nan")
    w = np.asarray(weights, dtype=np.float64)
    return float((binary_log_loss(truth, prob, eps) @ w).sum() / (len(truth) * w.sum()))


def per_class_log_loss(y_true: ArrayLike, y_prob: ArrayLike, eps: float = 1e-7) -> dict[str, float]:
    """Mean binary log loss of each label over the labelled images."""
    truth, prob = _checked(y_true, y_prob)
    if len(truth) == 0:
        return dict.fromkeys(LABELS, float("nan"))
    losses = binary_log_loss(truth, prob, eps).mean(axis=0)
    return {label: float(loss) for label, loss in zip(LABELS, losses)}


def roc_auc(y_true: ArrayLike, y_prob: ArrayLike) -> dict[str, float]:
    """ROC AUC per label and their `mean` (over the defined ones); NaN for a label whose labelled
    images are all positive or all negative (AUC undefined) instead of an error."""
    truth, prob = _checked(y_true, y_prob)
    result: dict[str, float] = {}
    for k, label in enumerate(LABELS):
        column = truth[:, k]
        defined = 0 < column.sum() < len(column)
        result[label] = float(roc_auc_score(column, prob[:, k])) if defined else float("nan")
    values = np.array(list(result.values()))
    result["mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return result


def _threshold_vector(threshold: Thresholds) -> np.ndarray:
    if isinstance(threshold, Mapping):
        unknown = set(threshold) - set(LABELS)
        if unknown:
            raise ValueError(f"thresholds for unknown label(s) {sorted(unknown)}")
        return np.array([float(threshold.get(label, 0.5)) for label in LABELS])
    vector = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (N_LABELS,))
    return vector.copy()


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (sklearn's zero_division=0)."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, 0.0)


def _scores(
    tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray
) -> dict[str, np.ndarray]:
    """Precision, recall, F1, F2 and accuracy from confusion counts (vectorised).

    ``Fβ = (1 + β²) tp / ((1 + β²) tp + β² fn + fp)``.
    """
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fn + fp),
        "f2": _ratio(5 * tp, 5 * tp + 4 * fn + fp),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
    }


def threshold_metrics(
    y_true: ArrayLike, y_prob: ArrayLike, threshold: Thresholds = 0.5
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1, F2, accuracy and confusion counts at a threshold (``p ≥ t`` is
    positive), per label, `macro` (mean of the per-label scores) and `micro` (pooled counts).

    `threshold`: one value, six values, or a ``{label: t}`` mapping (missing labels use 0.5).
    """
    truth, prob = _checked(y_true, y_prob)
    thresholds = _threshold_vector(threshold)
    predicted = prob >= thresholds
    positive = truth == 1.0
    tp = (predicted & positive).sum(axis=0).astype(np.float64)
    fp = (predicted & ~positive).sum(axis=0).astype(np.float64)
    fn = (~predicted & positive).sum(axis=0).astype(np.float64)
    tn = (~predicted & ~positive).sum(axis=0).astype(np.float64)
    per_class = _scores(tp, fp, fn, tn)
    result: dict[str, dict[str, float]] = {}
    for k, label in enumerate(LABELS):
        entry = {name: float(values[k]) for name, values in per_class.items()}
        entry.update(threshold=float(thresholds[k]), tp=float(tp[k]), fp=float(fp[k]),
                     fn=float(fn[k]), tn=float(tn[k]), support=float(tp[k] + fn[k]))
        result[label] = entry
    result["macro"] = {name: float(values.mean()) for name, values in per_class.items()}
    pooled = _scores(*(np.array([counts.sum()]) for counts in (tp, fp, fn, tn)))
    result["micro"] = {name: float(values[0]) for name, values in pooled.items()}
    return result


def best_thresholds(
    y_true: ArrayLike, y_prob: ArrayLike, beta: float = 1.0
) -> dict[str, dict[str, float]]:
    """Per label, the threshold maximising Fβ over all distinct scores (`precision_recall_curve`).

    Returns ``{label: {"threshold", "fbeta", "precision", "recall"}}``; predicting ``p ≥
    threshold`` reproduces that Fβ. A label with no positive image gets NaN entries.
    """
    truth, prob = _checked(y_true, y_prob)
    b2 = beta * beta
    result: dict[str, dict[str, float]] = {}
    for k, label in enumerate(LABELS):
        if not truth[:, k].any():
            result[label] = dict.fromkeys(("threshold", "fbeta", "precision", "recall"),
                                          float("nan"))
            continue
        precision, recall, thresholds = precision_recall_curve(truth[:, k], prob[:, k])
        precision, recall = precision[:-1], recall[:-1]
        fbeta = _ratio((1 + b2) * precision * recall, b2 * precision + recall)
        best = int(np.argmax(fbeta))
        result[label] = {
            "threshold": float(thresholds[best]),
            "fbeta": float(fbeta[best]),
            "precision": float(precision[best]),
            "recall": float(recall[best]),
        }
    return result


def study_level_arrays(
    y_true: ArrayLike, y_prob: ArrayLike, study_ids: Sequence[Any] | np.ndarray | pd.Series
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slice → study: a study is positive for a label when any labelled slice is (NaN when none
    is labelled), its score is the max over its slices. Returns ``(y_true, y_prob, study_ids)``
    with one row per study, studies sorted."""
    truth = _as_matrix(y_true, "y_true")
    prob = _as_matrix(y_prob, "y_prob")
    ids = np.asarray(study_ids)
    if not (len(truth) == len(prob) == len(ids)):
        raise ValueError(f"y_true ({len(truth)}), y_prob ({len(prob)}) and study_ids ({len(ids)}) "
                         "differ in length")
    if pd.isna(ids).any():
        raise ValueError(f"study_ids has {int(pd.isna(ids).sum())} missing value(s)")
    frame = pd.DataFrame(np.hstack([truth, prob]))
    grouped = frame.groupby(ids, sort=True).max()  # skips NaN labels; all-NaN group → NaN
    values = grouped.to_numpy(dtype=np.float64)
    return values[:, :N_LABELS], values[:, N_LABELS:], grouped.index.to_numpy()


def study_level(
    frame: pd.DataFrame,
    study_col: str = "study_instance_uid",
    *,
    label_cols: Sequence[str] = LABELS,
    prob_cols: Sequence[str] = PROB_COLUMNS,
) -> tuple[np.ndarray, np.ndarray]:
    """Study-level ``(y_true, y_prob)`` from a slice table holding labels, probabilities and the
    study id (max over each study's slices; see `study_level_arrays`)."""
    missing = [c for c in (study_col, *label_cols, *prob_cols) if c not in frame.columns]
    if missing:
        raise ValueError(f"table lacks column(s) {missing}")
    truth, prob, _ = study_level_arrays(
        frame[list(label_cols)].to_numpy(dtype=np.float64, na_value=np.nan),
        frame[list(prob_cols)].to_numpy(dtype=np.float64, na_value=np.nan),
        frame[study_col].to_numpy(),
    )
    return truth, prob


def _level_summary(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: Thresholds, eps: float
) -> dict[str, Any]:
    n_labelled = int(labelled_rows(y_true).sum())
    return {
        "n": len(y_true),
        "n_labelled": n_labelled,
        "n_unlabelled_excluded": len(y_true) - n_labelled,
        "weighted_log_loss": weighted_log_loss(y_true, y_prob, eps),
        "log_loss": per_class_log_loss(y_true, y_prob, eps),
        "roc_auc": roc_auc(y_true, y_prob),
        "at_threshold": threshold_metrics(y_true, y_prob, threshold),
        "best_f1": best_thresholds(y_true, y_prob, beta=1.0),
        "best_f2": best_thresholds(y_true, y_prob, beta=2.0),
    }


def summarize(
    y_true: ArrayLike,
    y_prob: ArrayLike,
    study_ids: Sequence[Any] | np.ndarray | pd.Series | None = None,
    threshold: Thresholds = 0.5,
    eps: float = 1e-7,
) -> dict[str, Any]:
    """Every metric of this module as a nested dict for reports: ``{"slice": {...}}`` plus
    ``{"study": {...}}`` when `study_ids` is given. Each level holds counts (``n``,
    ``n_unlabelled_excluded``), ``weighted_log_loss``, per-label ``log_loss``, ``roc_auc``,
    ``at_threshold`` metrics and the ``best_f1``/``best_f2`` thresholds."""
    truth = _as_matrix(y_true, "y_true")
    prob = _as_matrix(y_prob, "y_prob")
    summary: dict[str, Any] = {"slice": _level_summary(truth, prob, threshold, eps)}
    if study_ids is not None:
        study_truth, study_prob, _ = study_level_arrays(truth, prob, study_ids)
        summary["study"] = _level_summary(study_truth, study_prob, threshold, eps)
    return summary
