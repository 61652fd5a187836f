"""Predictions and labels for evaluation: read them, join them on `image_id`, count what is left out.

Predictions: `ichscan predict`'s slices.parquet (or its DataFrame), or a Kaggle submission CSV
(`ID,Label` with `ID_<id>_<subtype>`). Labels: a manifest or cache slices table with the six label
columns, or an RSNA label CSV. The joined table holds `image_id`, `study_instance_uid`, the six
labels and the six probabilities as `prob_<label>` (`ichscan.metrics.PROB_COLUMNS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ichscan.labels import LABELS
from ichscan.metrics import PROB_COLUMNS

STUDY_COLUMN = "study_instance_uid"


class EvaluationInputError(ValueError):
    """Predictions or labels that cannot be used; the message names the file and the reason."""


@dataclass
class JoinedTable:
    """Labelled predictions, one row per image, and the counts of rows that could not be used."""

    frame: pd.DataFrame
    n_predictions: int
    n_without_labels: int
    n_labels_without_predictions: int
    n_partially_labelled: int


def read_predictions(predictions: Path | pd.DataFrame) -> pd.DataFrame:
    """`image_id` + six probability columns (named by label), plus the ids the table carries."""
    source = "predictions" if isinstance(predictions, pd.DataFrame) else str(predictions)
    if isinstance(predictions, pd.DataFrame):
        frame = predictions.copy()
    else:
        path = Path(predictions)
        if not path.is_file():
            raise EvaluationInputError(f"{path}: no such file")
        try:
            if path.suffix.lower() == ".csv":
                frame = pivot_submission(pd.read_csv(path, dtype={"ID": str}), source)
            else:
                frame = pd.read_parquet(path)
        except (OSError, ValueError, KeyError) as error:
            raise EvaluationInputError(f"{path}: cannot read predictions ({error})") from error
    missing = [c for c in ("image_id", *LABELS) if c not in frame.columns]
    if missing:
        raise EvaluationInputError(f"{source}: missing column(s) {', '.join(missing)}")
    if frame["image_id"].duplicated().any():
        raise EvaluationInputError(
            f"{source}: {int(frame['image_id'].duplicated().sum())} duplicated image_id(s)"
        )
    probs = frame[list(LABELS)].to_numpy(dtype=np.float64)
    if not np.isfinite(probs).all() or (probs < 0).any() or (probs > 1).any():
        raise EvaluationInputError(f"{source}: probabilities must be finite and in [0, 1]")
    return frame


def pivot_submission(submission: pd.DataFrame, source: str) -> pd.DataFrame:
    """Kaggle `ID,Label` rows (`ID_<id>_<subtype>`) → one row per image with six columns."""
    if list(submission.columns[:2]) != ["ID", "Label"]:
        raise EvaluationInputError(f"{source}: expected columns ID,Label")
    parts = submission["ID"].str.rsplit("_", n=1, expand=True)
    if parts.shape[1] != 2 or not parts[1].isin(LABELS).all():
        raise EvaluationInputError(f"{source}: IDs must look like ID_<id>_<subtype>")
    long = pd.DataFrame({"image_id": parts[0], "label": parts[1], "value": submission["Label"]})
    if long.duplicated(["image_id", "label"]).any():
        raise EvaluationInputError(f"{source}: duplicated ID rows")
    wide = long.pivot(index="image_id", columns="label", values="value")
    if wide.isna().any().any():
        raise EvaluationInputError(f"{source}: some images lack one of the six labels")
    return wide[list(LABELS)].reset_index().rename_axis(columns=None)


def read_labels(labels: Path) -> pd.DataFrame:
    """`image_id` + six label columns (0/1, NaN unlabelled), plus study ids when the file has them."""
    path = Path(labels)
    if not path.is_file():
        raise EvaluationInputError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        from ichscan.dicom import read_rsna_labels

        try:
            table = read_rsna_labels(path).labels
        except (OSError, ValueError, KeyError) as error:
            raise EvaluationInputError(f"{path}: cannot read RSNA labels ({error})") from error
        frame = table.rename_axis("image_id").reset_index()
    else:
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as error:
            raise EvaluationInputError(f"{path}: cannot read as Parquet ({error})") from error
    missing = [c for c in ("image_id", *LABELS) if c not in frame.columns]
    if missing:
        raise EvaluationInputError(f"{path}: no label column(s) {', '.join(missing)}")
    keep = ["image_id", *LABELS] + ([STUDY_COLUMN] if STUDY_COLUMN in frame.columns else [])
    frame = frame[keep].drop_duplicates("image_id")
    return frame


def join_predictions(predictions: pd.DataFrame, labels: pd.DataFrame) -> JoinedTable:
    """Inner join on `image_id`; fully labelled rows only, every excluded row counted."""
    probs = predictions.rename(columns=dict(zip(LABELS, PROB_COLUMNS)))
    label_side = labels
    if STUDY_COLUMN in probs.columns and STUDY_COLUMN in label_side.columns:
        label_side = label_side.drop(columns=[STUDY_COLUMN])
    merged = probs.merge(label_side, on="image_id", how="inner", validate="one_to_one")
    has_study = STUDY_COLUMN in merged.columns
    label_values = merged[list(LABELS)].to_numpy(dtype=np.float64, na_value=np.nan)
    complete = ~np.isnan(label_values).any(axis=1)
    partial = int((~complete & ~np.isnan(label_values).all(axis=1)).sum())
    unlabelled = int((~complete).sum())
    frame = merged.loc[complete, ["image_id", *([STUDY_COLUMN] if has_study else []), *LABELS, *PROB_COLUMNS]]
    return JoinedTable(
        frame=frame.reset_index(drop=True),
        n_predictions=len(predictions),
        n_without_labels=len(predictions) - len(merged) + unlabelled,
        n_labels_without_predictions=int((~labels["image_id"].isin(predictions["image_id"])).sum()),
        n_partially_labelled=partial,
    )
