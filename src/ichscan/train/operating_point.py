"""The triage operating point of a run: a calibrated study-level probability and its threshold.

A study's raw score is the maximum over its slices of p(any), ``m = max_s p_any(s)``. That maximum
is not a probability of the study: with tens of slices per study, some slice of almost every
study scores high, and "``m`` ≥ 0.5" flags nearly every study. So the run calibrates ``m`` as a
study-level probability on its own validation studies (the out-of-fold predictions, one score per
study) with **Platt scaling**::

    P(ICH | study) = σ(a · logit(m) + b)

(a, b by maximum likelihood, `sklearn.linear_model.LogisticRegression` with ``C=inf`` (no penalty), on Platt's
(1999) smoothed targets ``(N₊ + 1)/(N₊ + 2)`` for positives and ``1/(N₋ + 2)`` for negatives, so a
validation set the scores separate perfectly still gives finite a, b). Platt and not isotonic
regression: a fold's validation set holds tens to a few hundred studies, where isotonic's step
function overfits and ties many studies at one value; two parameters do not, and a monotone map
keeps the ranking (the AUC) unchanged.

The threshold is chosen on the same validation studies for a stated sensitivity ``s`` (0.95 by
default): with the positive studies' scores sorted from high to low, it is the ``k``-th of them,
``k = ⌈s · n_positive⌉``, the highest threshold that still flags at least a share ``s`` of them.
Being monotone, the calibration maps it to the same decision on the calibrated scale. The chosen
point, with the validation sensitivity and specificity it reached, is stored next to the run's
contract as ``RUN/operating_point.json`` (per fold; a run folder's ``operating_point.json`` pools
the out-of-fold studies of all its folds, the operating point of their ensemble).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ichscan.files import atomic_path

__all__ = [
    "DEFAULT_SENSITIVITY",
    "OPERATING_POINT_FILE",
    "OperatingPoint",
    "OperatingPointError",
    "fit_operating_point",
    "operating_point_of",
    "read_operating_point",
    "study_scores",
    "threshold_for_sensitivity",
    "write_operating_point",
    "write_run_operating_points",
]

log = logging.getLogger(__name__)

OPERATING_POINT_FILE: Final[str] = "operating_point.json"
DEFAULT_SENSITIVITY: Final[float] = 0.95
_EPS: Final[float] = 1e-6


class OperatingPointError(ValueError):
    """No operating point can be chosen (e.g. validation holds one class only); names the reason."""


class OperatingPoint(BaseModel):
    """Platt calibration of the study max of p(any) and the threshold chosen for a sensitivity."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["platt"] = "platt"
    slope: float = Field(gt=0.0, description="a of σ(a·logit(m) + b)")
    intercept: float
    target_sensitivity: float = Field(gt=0.0, le=1.0)
    score_threshold: float = Field(description="threshold on the raw study score m (max over slices of p(any))")
    threshold: float = Field(description="the same threshold on the calibrated study probability")
    sensitivity: float = Field(description="validation sensitivity reached at the threshold")
    specificity: float = Field(description="validation specificity at the threshold")
    n_studies: int
    n_positive: int
    source: str = Field(description="the out-of-fold predictions it was fitted on")

    def calibrate(self, scores: np.ndarray | Sequence[float]) -> np.ndarray:
        """Calibrated study probabilities ``σ(a · logit(m) + b)`` of raw study scores ``m``."""
        m = np.clip(np.asarray(scores, dtype=np.float64), _EPS, 1 - _EPS)
        z = self.slope * (np.log(m) - np.log1p(-m)) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def detect(self, scores: np.ndarray | Sequence[float]) -> np.ndarray:
        """ICH detected: raw study score ≥ `score_threshold` (⇔ calibrated ≥ `threshold`)."""
        return np.asarray(scores, dtype=np.float64) >= self.score_threshold


def threshold_for_sensitivity(positive_scores: np.ndarray, sensitivity: float) -> float:
    """The ``k``-th highest positive score, ``k = ⌈sensitivity · n⌉``: the highest threshold at which
    ``score ≥ threshold`` flags at least that share of the positives."""
    if not 0.0 < sensitivity <= 1.0:
        raise OperatingPointError(f"sensitivity must be in (0, 1], got {sensitivity}")
    scores = np.sort(np.asarray(positive_scores, dtype=np.float64))[::-1]
    if scores.size == 0:
        raise OperatingPointError("no positive study to choose a threshold on")
    k = max(1, math.ceil(sensitivity * scores.size - 1e-9))
    return float(scores[k - 1])


def fit_operating_point(
    scores: np.ndarray, labels: np.ndarray, sensitivity: float = DEFAULT_SENSITIVITY, source: str = ""
) -> OperatingPoint:
    """Platt-calibrate study scores against study labels (0/1) and choose the threshold (module doc)."""
    from sklearn.linear_model import LogisticRegression

    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    keep = np.isfinite(scores) & np.isfinite(labels)
    scores, labels = scores[keep], labels[keep] >= 0.5
    n_positive = int(labels.sum())
    if n_positive == 0 or n_positive == len(labels):
        raise OperatingPointError(f"{source or 'validation'}: {len(labels)} studies, {n_positive} positive: "
                                  "calibration needs positive and negative studies")
    m = np.clip(scores, _EPS, 1 - _EPS)
    feature = (np.log(m) - np.log1p(-m))[:, None]
    n_negative = len(labels) - n_positive
    target = np.where(labels, (n_positive + 1) / (n_positive + 2), 1 / (n_negative + 2))
    # soft targets as two weighted rows per study: label 1 with weight t, label 0 with weight 1 − t
    regression = LogisticRegression(C=np.inf, solver="lbfgs", max_iter=1000).fit(
        np.vstack([feature, feature]), np.r_[np.ones(len(m)), np.zeros(len(m))], sample_weight=np.r_[target, 1 - target])
    slope, intercept = float(regression.coef_[0, 0]), float(regression.intercept_[0])
    if not slope > 0:
        raise OperatingPointError(f"{source or 'validation'}: calibration slope {slope:.3g} ≤ 0: the scores do not "
                                  "rank positive studies higher; no operating point")
    threshold = threshold_for_sensitivity(scores[labels], sensitivity)
    flagged = scores >= threshold
    point = OperatingPoint(
        slope=slope, intercept=intercept, target_sensitivity=sensitivity, score_threshold=threshold,
        threshold=0.0, sensitivity=float(flagged[labels].mean()), specificity=float((~flagged[~labels]).mean()),
        n_studies=int(len(labels)), n_positive=n_positive, source=source,
    )
    return point.model_copy(update={"threshold": float(point.calibrate([threshold])[0])})


def study_scores(oof: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per study of out-of-fold predictions: the max over slices of p(any) and the study label
    (any slice labelled ``any``). Needs ``study_instance_uid``, ``any``, ``label_any``."""
    missing = [c for c in ("study_instance_uid", "any", "label_any") if c not in oof.columns]
    if missing:
        raise OperatingPointError(f"out-of-fold predictions lack column(s) {missing}")
    grouped = oof.groupby("study_instance_uid", sort=True)
    return grouped["any"].max().to_numpy(np.float64), grouped["label_any"].max().to_numpy(np.float64)


def operating_point_of(run_dirs: Sequence[Path], sensitivity: float = DEFAULT_SENSITIVITY) -> OperatingPoint:
    """The operating point fitted on the pooled ``oof.parquet`` of `run_dirs` (folds of one run)."""
    frames = []
    for run_dir in run_dirs:
        path = Path(run_dir) / "oof.parquet"
        try:
            frames.append(pd.read_parquet(path))
        except (OSError, ValueError) as exc:
            raise OperatingPointError(f"{path}: cannot read out-of-fold predictions ({exc})") from exc
    scores, labels = study_scores(pd.concat(frames, ignore_index=True))
    source = ", ".join(f"{Path(r).parent.name}/{Path(r).name}/oof.parquet" for r in run_dirs)
    return fit_operating_point(scores, labels, sensitivity, source)


def write_operating_point(folder: Path, point: OperatingPoint) -> Path:
    """``FOLDER/operating_point.json``, atomically."""
    path = Path(folder) / OPERATING_POINT_FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(point.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    return path


def read_operating_point(folder: Path) -> OperatingPoint | None:
    """The stored operating point of a fold or run folder, None when it has none."""
    path = Path(folder) / OPERATING_POINT_FILE
    if not path.is_file():
        return None
    try:
        return OperatingPoint.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        raise OperatingPointError(f"{path}: unreadable operating point ({exc.__class__.__name__})") from exc


def write_run_operating_points(fold_dir: Path, sensitivity: float = DEFAULT_SENSITIVITY) -> OperatingPoint | None:
    """After a fold finished: its own operating point, and its run folder's pooled over every fold
    with out-of-fold predictions. Logs (never raises) when validation cannot give one."""
    fold_dir = Path(fold_dir)
    point = None
    try:
        point = operating_point_of([fold_dir], sensitivity)
        write_operating_point(fold_dir, point)
        log.info("%s: operating point for sensitivity %.2f: study score ≥ %.4f (calibrated %.4f); validation "
                 "sensitivity %.3f, specificity %.3f on %d studies", fold_dir, sensitivity, point.score_threshold,
                 point.threshold, point.sensitivity, point.specificity, point.n_studies)
    except OperatingPointError as exc:
        log.warning("%s: no operating point (%s)", fold_dir, exc)
    folds = sorted(p for p in fold_dir.parent.glob("fold*") if (p / "oof.parquet").is_file())
    if folds and fold_dir.name.startswith("fold"):
        try:
            write_operating_point(fold_dir.parent, operating_point_of(folds, sensitivity))
        except OperatingPointError as exc:
            log.warning("%s: no pooled operating point (%s)", fold_dir.parent, exc)
    return point
