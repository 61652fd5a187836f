"""Evaluation figures as PNG: ROC and precision–recall curves, reliability diagrams, confusion
matrices, each with a panel per level (slice, study) and a curve per label.

Curves come from scikit-learn (`roc_curve`, `precision_recall_curve`, `calibration_curve`,
`confusion_matrix`); figures use matplotlib's object API (no pyplot state) and are written
atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ichscan.files import atomic_path
from ichscan.labels import LABELS

Levels = Mapping[str, tuple[np.ndarray, np.ndarray]]  # level name → (y_true, y_prob), each (n, 6)
COLORS: dict[str, str] = dict(zip(LABELS, ("#000000", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00")))
DPI = 110


def defined(y: np.ndarray) -> bool:
    """A binary label has both classes, so curves and AUC are defined."""
    return 0 < int(y.sum()) < len(y)


def save(figure: Figure, path: Path) -> Path:
    """Write `figure` to `path` as PNG, atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI)
    return path


def level_axes(n_levels: int, rows: int = 1, height: float = 4.6) -> tuple[Figure, np.ndarray]:
    """A figure with `rows` × `n_levels` square-ish panels."""
    figure = Figure(figsize=(5.4 * n_levels, height * rows), layout="constrained")
    axes = np.asarray(figure.subplots(rows, n_levels, squeeze=False))
    return figure, axes


def plot_roc_curves(levels: Levels, path: Path) -> Path:
    """ROC curve of every label per level, AUC in the legend, chance diagonal dashed."""
    figure, axes = level_axes(len(levels))
    for ax, (level, (y_true, y_prob)) in zip(axes[0], levels.items()):
        for k, label in enumerate(LABELS):
            if not defined(y_true[:, k]):
                continue
            fpr, tpr, _ = roc_curve(y_true[:, k], y_prob[:, k])
            auc = roc_auc_score(y_true[:, k], y_prob[:, k])
            ax.plot(
                fpr, tpr, color=COLORS[label], lw=2 if label == "any" else 1.3, label=f"{label} ({auc:.3f})"
            )
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8)
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.01),
            xlabel="false positive rate (1 − specificity)",
            ylabel="true positive rate (sensitivity)",
            title=f"ROC, {level} level (n={len(y_true)})",
        )
        ax.set_aspect("equal")
        ax.legend(loc="lower right", fontsize=8, title="label (AUC)", title_fontsize=8)
        ax.grid(alpha=0.3)
    return save(figure, path)


def plot_pr_curves(levels: Levels, path: Path) -> Path:
    """Precision–recall curve of every label per level, average precision and prevalence in the legend."""
    figure, axes = level_axes(len(levels))
    for ax, (level, (y_true, y_prob)) in zip(axes[0], levels.items()):
        for k, label in enumerate(LABELS):
            if not defined(y_true[:, k]):
                continue
            precision, recall, _ = precision_recall_curve(y_true[:, k], y_prob[:, k])
            ap = average_precision_score(y_true[:, k], y_prob[:, k])
            prevalence = y_true[:, k].mean()
            ax.step(
                recall,
                precision,
                where="post",
                color=COLORS[label],
                lw=2 if label == "any" else 1.3,
                label=f"{label} ({ap:.3f}; {prevalence:.1%})",
            )
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1.01),
            xlabel="recall (sensitivity)",
            ylabel="precision (PPV)",
            title=f"Precision–recall, {level} level",
        )
        ax.set_aspect("equal")
        ax.legend(loc="lower left", fontsize=8, title="label (AP; prevalence)", title_fontsize=8)
        ax.grid(alpha=0.3)
    return save(figure, path)


def plot_calibration(levels: Levels, path: Path, n_bins: int = 10) -> Path:
    """Reliability diagram per level (observed frequency vs mean predicted probability, equal-width
    bins) above a histogram of the predicted probabilities (log counts)."""
    figure, axes = level_axes(len(levels), rows=2, height=3.6)
    for column, (level, (y_true, y_prob)) in enumerate(levels.items()):
        top, bottom = axes[0, column], axes[1, column]
        top.plot([0, 1], [0, 1], ls="--", color="grey", lw=0.8, label="perfectly calibrated")
        bins = np.linspace(0.0, 1.0, n_bins + 1)
        for k, label in enumerate(LABELS):
            if not defined(y_true[:, k]):
                continue
            observed, predicted = calibration_curve(
                y_true[:, k], y_prob[:, k], n_bins=n_bins, strategy="uniform"
            )
            top.plot(predicted, observed, marker="o", ms=3, color=COLORS[label], label=label)
            bottom.hist(y_prob[:, k], bins=bins, histtype="step", color=COLORS[label], lw=1.2)
        top.set(
            xlim=(0, 1),
            ylim=(0, 1.01),
            xlabel="mean predicted probability",
            ylabel="observed frequency",
            title=f"Reliability, {level} level",
        )
        top.legend(loc="upper left", fontsize=7)
        top.grid(alpha=0.3)
        bottom.set(
            xlim=(0, 1),
            yscale="log",
            xlabel="predicted probability",
            ylabel="count",
            title=f"Predicted probabilities, {level} level",
        )
        bottom.yaxis.set_major_formatter(ScalarFormatter())
        bottom.yaxis.set_minor_formatter(NullFormatter())
        bottom.grid(alpha=0.3)
    return save(figure, path)


def plot_confusion_matrices(levels: Levels, threshold: float, path: Path) -> Path:
    """2×2 confusion matrix of every label at `threshold` (p ≥ t positive), a row per level."""
    figure = Figure(figsize=(2.6 * len(LABELS), 2.9 * len(levels)), layout="constrained")
    axes = np.asarray(figure.subplots(len(levels), len(LABELS), squeeze=False))
    for row, (level, (y_true, y_prob)) in enumerate(levels.items()):
        for k, label in enumerate(LABELS):
            matrix = confusion_matrix(
                y_true[:, k].astype(int), (y_prob[:, k] >= threshold).astype(int), labels=[0, 1]
            )
            display = ConfusionMatrixDisplay(matrix, display_labels=["neg", "pos"])
            display.plot(ax=axes[row, k], colorbar=False, cmap="Blues", values_format="d")
            axes[row, k].set_title(f"{label}\n{level} level", fontsize=9)
            axes[row, k].set_xlabel(f"predicted (p ≥ {threshold:g})", fontsize=8)
            axes[row, k].set_ylabel("true", fontsize=8)
    return save(figure, path)
