"""`evaluate`: labelled predictions → metrics with study-bootstrap intervals, figures, HTML report."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress

from ichscan.evaluate.bootstrap import (
    THRESHOLD_METRICS,
    bootstrap_counts,
    percentile_interval,
    weighted_metrics,
)
from ichscan.evaluate.figures import (
    plot_calibration,
    plot_confusion_matrices,
    plot_pr_curves,
    plot_roc_curves,
)
from ichscan.evaluate.report import write_report
from ichscan.evaluate.tables import (
    STUDY_COLUMN,
    EvaluationInputError,
    join_predictions,
    read_labels,
    read_predictions,
)
from ichscan.files import atomic_path
from ichscan.labels import LABELS
from ichscan.metrics import PROB_COLUMNS, study_level_arrays, summarize

PER_LABEL_METRICS: tuple[str, ...] = ("auc", "log_loss", *THRESHOLD_METRICS)
OVERALL_METRICS: tuple[str, ...] = ("weighted_log_loss", "mean_auc", "macro_f1", "macro_f2")
BOOTSTRAP_BLOCK_ELEMENTS = 8_000_000  # slice weights held at once (B_block × n_slices)


def point_estimates(level_summary: dict[str, Any]) -> dict[str, Any]:
    """Per-label and overall values of one level of `ichscan.metrics.summarize`, keyed like
    `weighted_metrics` (specificity from the confusion counts: TN / (TN + FP))."""
    at = level_summary["at_threshold"]
    per_label: dict[str, dict[str, float]] = {}
    for label in LABELS:
        tn, fp = at[label]["tn"], at[label]["fp"]
        per_label[label] = {
            "auc": level_summary["roc_auc"][label],
            "log_loss": level_summary["log_loss"][label],
            **{name: at[label][name] for name in THRESHOLD_METRICS if name != "specificity"},
            "specificity": tn / (tn + fp) if tn + fp > 0 else 0.0,
        }
    overall = {
        "weighted_log_loss": level_summary["weighted_log_loss"],
        "mean_auc": level_summary["roc_auc"]["mean"],
        "macro_f1": at["macro"]["f1"],
        "macro_f2": at["macro"]["f2"],
    }
    return {"per_label": per_label, "overall": overall}


def bootstrap_samples(
    levels: dict[str, tuple[np.ndarray, np.ndarray]],
    group_of_slice: np.ndarray,
    n_groups: int,
    n_bootstrap: int,
    seed: int,
    threshold: float,
    progress: bool,
) -> dict[str, dict[str, np.ndarray]]:
    """Metric samples per level under the same study resamples: slice weights are the draw
    counts of their study, study weights the counts themselves. Processed in blocks of
    resamples so memory stays bounded."""
    counts = bootstrap_counts(n_groups, n_bootstrap, seed)
    n_slices = len(group_of_slice)
    step = max(1, BOOTSTRAP_BLOCK_ELEMENTS // max(n_slices, 1))
    parts: dict[str, list[dict[str, np.ndarray]]] = {level: [] for level in levels}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("bootstrap", total=n_bootstrap)
        for start in range(0, n_bootstrap, step):
            block = counts[start : start + step].astype(np.float64)
            for level, (y_true, y_prob) in levels.items():
                weights = block[:, group_of_slice] if level == "slice" else block
                parts[level].append(weighted_metrics(y_true, y_prob, weights, threshold))
            bar.advance(task, len(block))
    return {
        level: {key: np.concatenate([p[key] for p in chunks]) for key in chunks[0]}
        for level, chunks in parts.items()
    }


def with_intervals(
    points: dict[str, Any], samples: dict[str, np.ndarray], confidence: float
) -> dict[str, Any]:
    """`{value, ci_low, ci_high}` for every per-label and overall metric of one level."""
    per_label: dict[str, dict[str, dict[str, float]]] = {label: {} for label in LABELS}
    for name in PER_LABEL_METRICS:
        low, high = percentile_interval(samples[name], confidence)
        for k, label in enumerate(LABELS):
            per_label[label][name] = {
                "value": points["per_label"][label][name],
                "ci_low": float(low[k]),
                "ci_high": float(high[k]),
            }
    overall = {}
    for name in OVERALL_METRICS:
        low, high = percentile_interval(samples[name], confidence)
        overall[name] = {"value": points["overall"][name], "ci_low": float(low), "ci_high": float(high)}
    return {"per_label": per_label, "overall": overall}


def json_safe(value: Any) -> Any:
    """NaN/inf → None and NumPy scalars → Python, so the file is strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def triage_at(point: Any, study_true: np.ndarray, study_score: np.ndarray) -> dict[str, Any]:
    """Study-level sensitivity and specificity of ICH (``any``) at a stored operating point."""
    detected = point.detect(study_score)
    positive = study_true >= 0.5
    tp, fn = int((detected & positive).sum()), int((~detected & positive).sum())
    tn, fp = int((~detected & ~positive).sum()), int((detected & ~positive).sum())
    return {
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "tp": tp, "fn": fn, "tn": tn, "fp": fp, "n_studies": int(len(positive)),
    }


def evaluate(
    predictions: Path | pd.DataFrame,
    labels: Path,
    out_dir: Path,
    n_bootstrap: int = 1000,
    seed: int = 0,
    *,
    threshold: float = 0.5,
    confidence: float = 0.95,
    figures: bool = True,
    progress: bool = True,
    operating_point: Any = None,
    split: str | None = None,
) -> dict[str, Any]:
    """Every metric of `ichscan.metrics`, slice and study level, with bootstrap intervals.

    Studies (not slices) are resampled `n_bootstrap` times from `seed`; without study ids each
    image is its own group. Writes OUT/metrics.json, the figures (roc_curves.png, pr_curves.png,
    calibration.png, confusion_matrices.png; skipped with `figures=False`) and OUT/report.html;
    returns the metrics.json content.

    `operating_point` (the run's `OperatingPoint`, see `operating_point_for`): the study-level
    sensitivity and specificity of ICH at it are reported under ``operating_point.evaluated``.
    `split`: how the model's validation was drawn (e.g. ``patient, 5 folds``), shown in the report.
    """
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be ≥ 1, got {n_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    out_dir = Path(out_dir)
    joined = join_predictions(read_predictions(predictions), read_labels(Path(labels)))
    frame = joined.frame
    if frame.empty:
        raise EvaluationInputError(f"{labels}: no prediction has a complete label (joined on image_id)")
    y_true = frame[list(LABELS)].to_numpy(dtype=np.float64)
    y_prob = frame[list(PROB_COLUMNS)].to_numpy(dtype=np.float64)
    has_studies = STUDY_COLUMN in frame.columns and frame[STUDY_COLUMN].notna().all()
    if has_studies:
        group_ids = frame[STUDY_COLUMN].astype(str).to_numpy()
    else:
        group_ids = frame["image_id"].astype(str).to_numpy()
    groups, group_of_slice = np.unique(group_ids, return_inverse=True)

    summary = summarize(y_true, y_prob, group_ids if has_studies else None, threshold=threshold)
    levels = {"slice": (y_true, y_prob)}
    if has_studies:
        study_true, study_prob, _ = study_level_arrays(y_true, y_prob, group_ids)
        levels["study"] = (study_true, study_prob)
    samples = bootstrap_samples(levels, group_of_slice, len(groups), n_bootstrap, seed, threshold, progress)

    metrics: dict[str, Any] = {
        "settings": {
            "threshold": threshold,
            "n_bootstrap": n_bootstrap,
            "seed": seed,
            "confidence": confidence,
            "resampled_unit": "study" if has_studies else "image",
            "split": split,
        },
        "counts": {
            "n_predictions": joined.n_predictions,
            "n_evaluated": len(frame),
            "n_studies": len(groups) if has_studies else None,
            "n_predictions_without_labels": joined.n_without_labels,
            "n_partially_labelled": joined.n_partially_labelled,
            "n_labels_without_predictions": joined.n_labels_without_predictions,
            "positives": {
                level: {label: int(y[:, k].sum()) for k, label in enumerate(LABELS)}
                for level, (y, _) in levels.items()
            },
        },
    }
    for level in levels:
        metrics[level] = with_intervals(point_estimates(summary[level]), samples[level], confidence)
        metrics[level]["best_f1"] = summary[level]["best_f1"]
        metrics[level]["best_f2"] = summary[level]["best_f2"]
        metrics[level]["confusion"] = {
            label: {c: summary[level]["at_threshold"][label][c] for c in ("tp", "fp", "fn", "tn")}
            for label in LABELS
        }

    if operating_point is not None:
        metrics["operating_point"] = {
            **operating_point.model_dump(mode="json"),
            "evaluated": triage_at(operating_point, levels["study"][0][:, 0], levels["study"][1][:, 0])
            if has_studies else None,
        }
    out_dir.mkdir(parents=True, exist_ok=True)
    pictures = (
        {
            "ROC curves": plot_roc_curves(levels, out_dir / "roc_curves.png"),
            "Precision–recall curves": plot_pr_curves(levels, out_dir / "pr_curves.png"),
            "Calibration (reliability)": plot_calibration(levels, out_dir / "calibration.png"),
            "Confusion matrices": plot_confusion_matrices(
                levels, threshold, out_dir / "confusion_matrices.png"
            ),
        }
        if figures
        else {}
    )
    metrics = json_safe(metrics)
    metrics["files"] = {name: path.name for name, path in pictures.items()}
    with atomic_path(out_dir / "metrics.json") as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    write_report(metrics, pictures, out_dir / "report.html")
    return metrics


def operating_point_for(predictions: Path | pd.DataFrame, model: str | Path | None = None,
                        fold: int | None = None) -> tuple[Any, str | None]:
    """The operating point and split label that apply to `predictions`: those of run `model`
    (resolved like every command's RUN), else what `ichscan predict` recorded in the
    ``studies.json`` next to a ``slices.parquet``; (None, None) when neither is known."""
    from ichscan.train.operating_point import OperatingPoint

    if model is not None:
        from ichscan.data.contract import ContractError, read_contract
        from ichscan.predict.pipeline import run_operating_point
        from ichscan.train.resolve import resolve_run

        resolved = resolve_run(model, fold)
        try:
            contract_split = read_contract(resolved.folds[0]).split
        except ContractError:
            contract_split = None
        split = None if contract_split is None else f"{contract_split.method}, {contract_split.n_folds} folds"
        return run_operating_point([model], fold), split
    if isinstance(predictions, pd.DataFrame):
        return None, None
    studies = Path(predictions).with_name("studies.json")
    try:
        stored = json.loads(studies.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    point = stored.get("operating_point")
    splits = {f"{s['method']}, {s['n_folds']} folds" for s in stored.get("splits") or [] if s}
    return (OperatingPoint.model_validate(point) if point else None), ("; ".join(sorted(splits)) or None)
