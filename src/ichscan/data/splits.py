"""Cross-validation folds and hold-out splits of a slices table, reproducible from a seed.

Methods (the seeds' menu; ``patient`` is the default everywhere):
- ``random``: rows shuffled into folds (`KFold`), seed 000's random 8:2. Neighbouring, nearly
  identical slices of one series then sit in training and validation, so the validation score
  (and the checkpoint chosen on it) is optimistic: `split_warning` says so;
- ``patient``: whole patients per fold (`GroupKFold` with shuffled groups): no patient in two folds;
- ``stratified``: iterative multilabel stratification of rows on the six labels
  (`MultilabelStratifiedKFold`, Sechidis et al. 2011), seed 003;
- ``patient_stratified``: whole patients, stratified on per-patient label indicators (patient
  positive for a label when any of its slices is): keeps rare subtypes present in every fold.
Unlabelled rows (NaN labels) count as negative for stratification and are never dropped.
"""

from __future__ import annotations

import logging
from typing import Final, Literal, get_args

import numpy as np
import pandas as pd
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit
from sklearn.model_selection import GroupKFold, GroupShuffleSplit, KFold, ShuffleSplit

from ichscan.labels import LABELS

SplitMethod = Literal["random", "patient", "stratified", "patient_stratified"]
SPLIT_METHODS: Final[tuple[str, ...]] = get_args(SplitMethod)
FOLD_COLUMN: Final[str] = "fold"
PATIENT_COLUMN: Final[str] = "patient_id"

log = logging.getLogger(__name__)


def split_warning(slices: pd.DataFrame, method: str, group_col: str = PATIENT_COLUMN) -> str | None:
    """Why a split leaks, or None: slices (``random``/``stratified``) or studies (grouped by
    ``study_instance_uid``) split apart while patient ids exist, so one patient's images can sit in
    training and validation at once."""
    if PATIENT_COLUMN not in slices.columns or slices[PATIENT_COLUMN].isna().all():
        return None
    patients = slices[PATIENT_COLUMN].nunique()
    if method in ("random", "stratified") and patients < len(slices):
        return (f"split by slice ({method}) although {patients} patient ids exist: slices of one patient "
                "(neighbours nearly identical) fall in training and validation; use method patient")
    if method in ("patient", "patient_stratified") and group_col != PATIENT_COLUMN and group_col in slices.columns:
        if slices[group_col].nunique() > patients:
            return (f"split by {group_col} although patient ids exist: studies of one patient fall in "
                    "training and validation; group by patient_id")
    return None


def _label_indicators(slices: pd.DataFrame) -> np.ndarray:
    """``(n, 6)`` int8 0/1 labels; NaN → 0."""
    missing = [label for label in LABELS if label not in slices.columns]
    if missing:
        raise ValueError(f"stratified splits need the label columns; missing {missing}")
    values = slices[list(LABELS)].to_numpy(dtype=np.float64, na_value=np.nan)
    return (np.nan_to_num(values, nan=0.0) >= 0.5).astype(np.int8)


def _groups(slices: pd.DataFrame, group_col: str) -> np.ndarray:
    """Integer group code per row; an error when the column is absent or has gaps."""
    if group_col not in slices.columns:
        raise ValueError(f"grouped splits need column {group_col!r}")
    values = slices[group_col]
    if values.isna().any():
        raise ValueError(f"column {group_col!r} has {int(values.isna().sum())} missing value(s)")
    codes, _ = pd.factorize(values, sort=True)
    return codes


def _group_indicators(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per group, 1 for a label when any of its rows is positive: ``(n_groups, 6)``."""
    indicators = np.zeros((groups.max() + 1, labels.shape[1]), dtype=np.int8)
    np.maximum.at(indicators, groups, labels)
    return indicators


def _check_method(method: str) -> None:
    if method not in SPLIT_METHODS:
        raise ValueError(f"unknown split method {method!r}: use one of {', '.join(SPLIT_METHODS)}")


def assign_folds(
    slices: pd.DataFrame,
    method: SplitMethod = "patient",
    n_folds: int = 5,
    seed: int = 0,
    group_col: str = PATIENT_COLUMN,
) -> pd.Series:
    """The fold (0 … n_folds − 1) of every row of `slices`, as an int Series named ``fold`` on the
    same index. The same seed gives the same folds; `group_col` chooses the grouping of the
    patient methods (e.g. ``study_instance_uid``)."""
    _check_method(method)
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    n = len(slices)
    placeholder = np.zeros(n)
    folds = np.full(n, -1, dtype=np.int64)
    if method == "random":
        splits = KFold(n_folds, shuffle=True, random_state=seed).split(placeholder)
        for fold, (_, test) in enumerate(splits):
            folds[test] = fold
    elif method == "stratified":
        splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for fold, (_, test) in enumerate(splitter.split(placeholder, _label_indicators(slices))):
            folds[test] = fold
    else:
        groups = _groups(slices, group_col)
        n_groups = int(groups.max()) + 1 if n else 0
        if n_groups < n_folds:
            raise ValueError(f"{n_groups} distinct {group_col} values cannot fill {n_folds} folds")
        group_folds = np.full(n_groups, -1, dtype=np.int64)
        if method == "patient":
            ids = np.arange(n_groups)
            splits = GroupKFold(n_folds, shuffle=True, random_state=seed).split(ids, groups=ids)
        else:
            indicators = _group_indicators(_label_indicators(slices), groups)
            splits = MultilabelStratifiedKFold(
                n_splits=n_folds, shuffle=True, random_state=seed
            ).split(np.zeros(n_groups), indicators)
        for fold, (_, test) in enumerate(splits):
            group_folds[test] = fold
        folds = group_folds[groups]
    return pd.Series(folds, index=slices.index, name=FOLD_COLUMN, dtype=np.int64)


def with_folds(
    slices: pd.DataFrame, method: SplitMethod = "patient", n_folds: int = 5, seed: int = 0,
    group_col: str = PATIENT_COLUMN,
) -> pd.DataFrame:
    """A copy of `slices` with the ``fold`` column of `assign_folds`."""
    return slices.assign(**{FOLD_COLUMN: assign_folds(slices, method, n_folds, seed, group_col)})


def holdout(
    slices: pd.DataFrame,
    method: SplitMethod = "patient",
    valid_fraction: float = 0.2,
    seed: int = 0,
    group_col: str = PATIENT_COLUMN,
) -> pd.Series:
    """A single train/validation split (default 8:2): bool Series, True for validation rows.

    Grouped methods take `valid_fraction` of the groups (patients), so the row fraction is
    approximate."""
    _check_method(method)
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(f"valid_fraction must lie in (0, 1), got {valid_fraction}")
    n = len(slices)
    valid = np.zeros(n, dtype=bool)
    if method in ("random", "stratified"):
        if method == "random":
            splitter = ShuffleSplit(n_splits=1, test_size=valid_fraction, random_state=seed)
            _, test = next(splitter.split(np.zeros(n)))
        else:
            splitter = MultilabelStratifiedShuffleSplit(
                n_splits=1, test_size=valid_fraction, random_state=seed
            )
            _, test = next(splitter.split(np.zeros(n), _label_indicators(slices)))
        valid[test] = True
    else:
        groups = _groups(slices, group_col)
        n_groups = int(groups.max()) + 1 if n else 0
        if n_groups < 2:
            raise ValueError(f"a grouped hold-out needs at least 2 distinct {group_col} values")
        ids = np.arange(n_groups)
        if method == "patient":
            splitter = GroupShuffleSplit(n_splits=1, test_size=valid_fraction, random_state=seed)
            _, test = next(splitter.split(ids, groups=ids))
        else:
            indicators = _group_indicators(_label_indicators(slices), groups)
            splitter = MultilabelStratifiedShuffleSplit(
                n_splits=1, test_size=valid_fraction, random_state=seed
            )
            _, test = next(splitter.split(np.zeros(n_groups), indicators))
        valid_groups = np.zeros(n_groups, dtype=bool)
        valid_groups[test] = True
        valid = valid_groups[groups]
    return pd.Series(valid, index=slices.index, name="valid")


def stratified_subset(
    slices: pd.DataFrame,
    fraction: float = 0.1,
    seed: int = 0,
    method: SplitMethod = "stratified",
    group_col: str = "patient_id",
) -> pd.DataFrame:
    """A `fraction` of the rows keeping the label distribution (seed 003's 10% multilabel-stratified
    subset); the original index is kept. ``method="patient_stratified"`` takes whole patients."""
    return slices[holdout(slices, method, fraction, seed, group_col).to_numpy()]
