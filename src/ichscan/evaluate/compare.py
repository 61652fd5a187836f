"""The seeds' comparison table of training runs: backbone, size, validation scores, time.

Per run directory (`ichscan train` layout): the backbone from `config.yaml`; the parameter count
of the network the config builds (on the meta device: no memory, no weights read); the best
validation weighted log loss, its epoch, the epochs trained and the summed epoch times from
`metrics.csv`; mean and `any` ROC AUC and macro F1 at 0.5 from the out-of-fold predictions
`oof.parquet` (`ichscan.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ichscan.files import atomic_path
from ichscan.labels import LABELS
from ichscan.metrics import roc_auc, threshold_metrics

COMPARE_COLUMNS: tuple[str, ...] = (
    "run",
    "backbone",
    "split",
    "params",
    "best_val_wll",
    "best_epoch",
    "mean_auc",
    "any_auc",
    "macro_f1",
    "epochs",
    "train_time_s",
)
HEADERS: dict[str, str] = {
    "run": "run",
    "backbone": "backbone",
    "split": "split",
    "params": "params",
    "best_val_wll": "best val weighted log loss",
    "best_epoch": "best epoch",
    "mean_auc": "mean AUC",
    "any_auc": "any AUC",
    "macro_f1": "F1 (macro, 0.5)",
    "epochs": "epochs",
    "train_time_s": "training time",
}
VALIDATION_METRIC = "val_wll"


class RunReadError(ValueError):
    """A run directory that cannot be summarised; the message names the file and the reason."""


@dataclass
class Comparison:
    """The comparison table (one row per readable run), one error line per unreadable (skipped)
    run, and one note per row with missing values."""

    table: pd.DataFrame
    errors: list[str]
    notes: list[str]


def count_parameters(config: object) -> int:
    """Parameters of the network `config` builds, counted on the meta device (nothing allocated)."""
    from ichscan.train.module import build_model

    with torch.device("meta"):
        model = build_model(config, pretrained=False)  # type: ignore[arg-type]
    return int(sum(p.numel() for p in model.parameters()))


def epoch_summary(metrics_path: Path) -> dict[str, float]:
    """Best validation weighted log loss and its epoch, epochs trained, summed epoch time."""
    try:
        history = pd.read_csv(metrics_path)
    except (OSError, ValueError) as error:
        raise RunReadError(f"{metrics_path}: cannot read ({error})") from error
    if VALIDATION_METRIC not in history.columns or history[VALIDATION_METRIC].notna().sum() == 0:
        raise RunReadError(f"{metrics_path}: no {VALIDATION_METRIC} column with values")
    best = int(history[VALIDATION_METRIC].idxmin())
    return {
        "best_val_wll": float(history.loc[best, VALIDATION_METRIC]),
        "best_epoch": int(history.loc[best, "epoch"]) if "epoch" in history else best,
        "epochs": int(history["epoch"].max()) + 1 if "epoch" in history else len(history),
        "train_time_s": float(history["epoch_time_s"].sum()) if "epoch_time_s" in history else math.nan,
    }


def oof_summary(oof_path: Path) -> dict[str, float]:
    """Mean and `any` AUC and macro F1 at 0.5 of a run's out-of-fold predictions."""
    try:
        oof = pd.read_parquet(oof_path)
    except (OSError, ValueError) as error:
        raise RunReadError(f"{oof_path}: cannot read ({error})") from error
    label_columns = [f"label_{label}" for label in LABELS]
    missing = [c for c in (*LABELS, *label_columns) if c not in oof.columns]
    if missing:
        raise RunReadError(f"{oof_path}: missing column(s) {', '.join(missing)}")
    y_true = oof[label_columns].to_numpy(dtype=np.float64)
    y_prob = oof[list(LABELS)].to_numpy(dtype=np.float64)
    auc = roc_auc(y_true, y_prob)
    return {
        "mean_auc": auc["mean"],
        "any_auc": auc["any"],
        "macro_f1": threshold_metrics(y_true, y_prob, 0.5)["macro"]["f1"],
    }


def split_label(method: str, n_folds: int) -> str:
    """``patient, 5 folds``: how a run's validation fold was drawn."""
    return f"{method}, {n_folds} folds"


def run_split(run_dir: Path, data: dict[str, object]) -> str:
    """The split of a run: from its input contract when it has one, else its config's data.split."""
    from ichscan.data.contract import ContractError, read_contract

    try:
        split = read_contract(run_dir).split
    except ContractError:
        split = None
    if split is not None:
        return split_label(split.method, split.n_folds)
    raw = data.get("split") or {}
    assert isinstance(raw, dict)
    return split_label(str(raw.get("method", "?")), int(raw.get("n_folds", 0)))


def summarize_run(run_dir: Path, notes: list[str] | None = None) -> dict[str, object]:
    """One comparison row (stage 1 or stage 2); RunReadError naming the file when config or
    metrics cannot be read.

    A run without (readable) out-of-fold predictions keeps its row with AUC/F1 empty and a line
    in `notes` saying why.
    """
    import yaml

    from ichscan.train import RunError, read_run_config
    from ichscan.train.resolve import run_stage

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunReadError(f"{run_dir}: not a run directory")
    try:
        if run_stage(run_dir) == 2:
            raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
            run_name, data = str(raw.get("name", "?")), dict(raw.get("data") or {})
            sequence = (raw.get("sequence") or {}).get("name", "?")
            backbone = (f"{(raw.get('model') or {}).get('backbone', '?')}+{sequence}"
                        if raw.get("kind") == "cnn_lstm" else f"{sequence} (stage 2)")
            params: float = math.nan
        else:
            config = read_run_config(run_dir)
            run_name, backbone, data = config.name, config.model.backbone, config.data.model_dump(mode="json")
            params = count_parameters(config)
    except (RunError, ValueError, OSError) as error:
        raise RunReadError(str(error)) from error
    name = f"{run_name}/{run_dir.name}" if run_dir.name.startswith("fold") else run_dir.name
    row: dict[str, object] = {
        "run": name,
        "backbone": backbone,
        "split": run_split(run_dir, data),
        "params": params,
        **epoch_summary(run_dir / "metrics.csv"),
    }
    oof_path = run_dir / "oof.parquet"
    try:
        if not oof_path.is_file():
            raise RunReadError(f"{oof_path}: missing (has the run finished?); AUC and F1 left empty")
        row.update(oof_summary(oof_path))
    except RunReadError as error:
        row.update(mean_auc=math.nan, any_auc=math.nan, macro_f1=math.nan)
        if notes is not None:
            notes.append(str(error))
    return row


def compare_runs(run_dirs: Sequence[Path]) -> Comparison:
    """The comparison table of `run_dirs`, best validation log loss first; unreadable runs are
    listed in `.errors` (one line each) instead of stopping the others, runs lacking out-of-fold
    predictions keep their row and get a line in `.notes`.

    Each entry is resolved like every command's ``RUN`` (`ichscan.train.resolve.resolve_run`): a
    run folder gives one row per fold; runs still training (no best.ckpt yet) are compared too."""
    from ichscan.train.resolve import RunError, resolve_run

    rows: list[dict[str, object]] = []
    errors: list[str] = []
    notes: list[str] = []
    for entry in run_dirs:
        try:
            folds = resolve_run(entry, finished=False).folds
        except RunError as error:
            errors.append(str(error))
            continue
        for run_dir in folds:
            try:
                rows.append(summarize_run(Path(run_dir), notes))
            except RunReadError as error:
                errors.append(str(error))
    table = pd.DataFrame(rows, columns=list(COMPARE_COLUMNS))
    table = table.sort_values("best_val_wll", kind="stable").reset_index(drop=True)
    return Comparison(table, errors, notes)


def format_cell(column: str, value: object) -> str:
    """Human-readable cell: params in millions, scores with 4 decimals, time in s/min."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if column == "params":
        return f"{float(value) / 1e6:.2f} M"  # type: ignore[call-overload]
    if column == "train_time_s":
        seconds = float(value)  # type: ignore[arg-type]
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    if column in ("best_val_wll", "mean_auc", "any_auc", "macro_f1"):
        return f"{float(value):.4f}"  # type: ignore[arg-type]
    return str(value)


def formatted_rows(table: pd.DataFrame) -> list[list[str]]:
    """Every row of `table` as display strings in COMPARE_COLUMNS order."""
    return [[format_cell(c, row[c]) for c in COMPARE_COLUMNS] for _, row in table.iterrows()]


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (numbers right-aligned)."""
    header = "| " + " | ".join(HEADERS[c] for c in COMPARE_COLUMNS) + " |"
    align = "|" + "|".join(":---" if c in ("run", "backbone") else "---:" for c in COMPARE_COLUMNS) + "|"
    body = ["| " + " | ".join(cells) + " |" for cells in formatted_rows(table)]
    return "\n".join([header, align, *body]) + "\n"


def write_comparison(table: pd.DataFrame, markdown_path: Path) -> tuple[Path, Path]:
    """Write the Markdown table and a CSV of the raw values (same stem), atomically."""
    markdown_path = Path(markdown_path)
    csv_path = markdown_path.with_suffix(".csv")
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(to_markdown(table), encoding="utf-8")
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    return markdown_path, csv_path
