"""Label statistics of a manifest or cache slices table (seed 004's figures).

Counts and percentages per label, the label co-occurrence matrix, how many slices, series,
studies and patients, and positive slices per study; printed as rich tables and drawn as PNGs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from ichscan.files import atomic_path
from ichscan.labels import LABELS

ID_COLUMNS: dict[str, str] = {
    "series": "series_instance_uid",
    "studies": "study_instance_uid",
    "patients": "patient_id",
}


@dataclass(frozen=True)
class LabelStatistics:
    """What `compute_statistics` finds in a slices table.

    `counts`: index LABELS + ``negative``, columns ``count`` and ``percent`` (of labelled slices);
    `cooccurrence`: 6×6 slices positive for both labels (diagonal = the label's count);
    `study_counts`: index LABELS, ``studies`` positive for the label and the positive slices per
    positive study (``mean``, ``median``, ``max``). Label parts are None without label columns.
    """

    n_slices: int
    n_labelled: int
    totals: dict[str, int | None]
    counts: pd.DataFrame | None
    cooccurrence: pd.DataFrame | None
    study_counts: pd.DataFrame | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "n_slices": self.n_slices,
            "n_labelled": self.n_labelled,
            "totals": self.totals,
            "counts": None if self.counts is None else self.counts.to_dict(orient="index"),
            "cooccurrence": None if self.cooccurrence is None
            else self.cooccurrence.to_dict(orient="index"),
            "study_counts": None if self.study_counts is None
            else self.study_counts.to_dict(orient="index"),
        }


def read_slices_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A manifest or cache ``slices.parquet``; errors name the file and the reason."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for a non-Parquet file
        raise ValueError(f"{path}: not a readable Parquet table ({type(error).__name__}: "
                         f"{error})") from error


def compute_statistics(slices: pd.DataFrame) -> LabelStatistics:
    """Counts, co-occurrences and per-study positives of `slices` (vectorised)."""
    totals = {name: (int(slices[col].nunique()) if col in slices.columns else None)
              for name, col in ID_COLUMNS.items()}
    if not all(label in slices.columns for label in LABELS):
        return LabelStatistics(len(slices), 0, totals, None, None, None)
    values = slices[list(LABELS)].to_numpy(dtype=np.float64, na_value=np.nan)
    labelled = ~np.isnan(values).any(axis=1)
    positive = values[labelled] >= 0.5
    n_labelled = int(labelled.sum())
    count = np.append(positive.sum(axis=0), (~positive.any(axis=1)).sum())
    percent = 100.0 * count / n_labelled if n_labelled else np.full(len(count), np.nan)
    counts = pd.DataFrame({"count": count.astype(np.int64), "percent": percent},
                          index=[*LABELS, "negative"])
    both = positive.T.astype(np.int64) @ positive.astype(np.int64)
    cooccurrence = pd.DataFrame(both, index=list(LABELS), columns=list(LABELS))
    study_counts = None
    study_col = ID_COLUMNS["studies"]
    if study_col in slices.columns:
        per_study = pd.DataFrame(positive.astype(np.int64), columns=list(LABELS))
        per_study = per_study.groupby(slices.loc[labelled, study_col].to_numpy()).sum()
        positive_studies = per_study.where(per_study > 0)
        study_counts = pd.DataFrame({
            "studies": (per_study > 0).sum(axis=0),
            "mean": positive_studies.mean(axis=0),
            "median": positive_studies.median(axis=0),
            "max": per_study.max(axis=0),
        })
    return LabelStatistics(len(slices), n_labelled, totals, counts, cooccurrence, study_counts)


def print_statistics(stats: LabelStatistics, console: Console) -> None:
    """Rich tables: totals, counts per label, co-occurrences, positive slices per study."""
    totals = Table(title="Slices table")
    for column in ("slices", "labelled", *stats.totals):
        totals.add_column(column, justify="right")
    totals.add_row(str(stats.n_slices), str(stats.n_labelled),
                   *("–" if v is None else str(v) for v in stats.totals.values()))
    console.print(totals)
    if stats.counts is None or stats.cooccurrence is None:
        console.print("no label columns: label counts skipped")
        return
    counts = Table(title="Labels (% of labelled slices; slices/study: mean per positive study)")
    counts.add_column("label")
    counts.add_column("slices", justify="right")
    counts.add_column("%", justify="right")
    if stats.study_counts is not None:
        for column in ("studies", "slices/study", "max"):
            counts.add_column(column, justify="right")
    for label, row in stats.counts.iterrows():
        cells = [str(label), f"{int(row['count']):,}", f"{row['percent']:.2f}"]
        if stats.study_counts is not None:
            if label in stats.study_counts.index:
                study = stats.study_counts.loc[label]
                cells += [f"{int(study['studies']):,}", f"{study['mean']:.1f}",
                          f"{int(study['max'])}"]
            else:
                cells += ["", "", ""]
        counts.add_row(*cells)
    console.print(counts)
    matrix = Table(title="Co-occurrence (slices positive for both)")
    matrix.add_column("")
    for label in LABELS:
        matrix.add_column(label[:8], justify="right")
    for label, row in stats.cooccurrence.iterrows():
        matrix.add_row(str(label), *(f"{int(v):,}" for v in row))
    console.print(matrix)


def plot_label_distribution(stats: LabelStatistics, path: str | os.PathLike[str]) -> Path:
    """Bar chart of slices per label (and negatives), with counts and % on the bars."""
    if stats.counts is None:
        raise ValueError("no label columns: nothing to plot")
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    names = list(stats.counts.index)
    bars = axes.bar(names, stats.counts["count"], color=["#b2182b"] + ["#ef8a62"] * 5 + ["#67a9cf"])
    axes.bar_label(bars, labels=[f"{c:,}\n{p:.1f}%" for c, p in
                                 zip(stats.counts["count"], stats.counts["percent"])], fontsize=8)
    axes.set_ylabel("slices")
    axes.set_title(f"Label distribution ({stats.n_labelled:,} labelled slices)")
    axes.tick_params(axis="x", labelrotation=20)
    axes.margins(y=0.18)
    return _save(figure, path)


def plot_cooccurrence(stats: LabelStatistics, path: str | os.PathLike[str]) -> Path:
    """Heat map of the label co-occurrence counts."""
    if stats.cooccurrence is None:
        raise ValueError("no label columns: nothing to plot")
    figure = Figure(figsize=(6.5, 5.5), layout="constrained")
    axes = figure.add_subplot()
    matrix = stats.cooccurrence.to_numpy()
    image = axes.imshow(np.log1p(matrix), cmap="Reds")
    ticks = np.arange(len(LABELS))
    axes.set_xticks(ticks, [label[:8] for label in LABELS], rotation=30)
    axes.set_yticks(ticks, list(LABELS))
    threshold = np.log1p(matrix).max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        axes.text(j, i, f"{value:,}", ha="center", va="center", fontsize=8,
                  color="white" if np.log1p(value) > threshold else "black")
    figure.colorbar(image, ax=axes, label="log(1 + slices)")
    axes.set_title("Slices positive for both labels")
    return _save(figure, path)


def _save(figure: Figure, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120)
    return Path(path)


def write_statistics(stats: LabelStatistics, out_dir: str | os.PathLike[str]) -> list[Path]:
    """``label_statistics.json`` and, with labels, ``label_distribution.png`` and
    ``label_cooccurrence.png`` in `out_dir`; returns the paths written."""
    out_dir = Path(out_dir)
    json_path = out_dir / "label_statistics.json"
    with atomic_path(json_path) as tmp:
        tmp.write_text(json.dumps(stats.to_dict(), indent=2, default=float))
    written = [json_path]
    if stats.counts is not None:
        written.append(plot_label_distribution(stats, out_dir / "label_distribution.png"))
        written.append(plot_cooccurrence(stats, out_dir / "label_cooccurrence.png"))
    return written
