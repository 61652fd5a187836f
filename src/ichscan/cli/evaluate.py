"""`ichscan evaluate` (metrics, intervals, figures, report) and `ichscan compare` (runs table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ichscan.cli.app import app, fail
from ichscan.labels import LABELS


def _interval(entry: dict[str, float | None]) -> str:
    value, low, high = entry["value"], entry["ci_low"], entry["ci_high"]
    if value is None:
        return "–"
    return f"{value:.4f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


@app.command("evaluate")
def evaluate_command(
    predictions: Annotated[
        Path, typer.Argument(help="slices.parquet of `ichscan predict` (or a Kaggle submission.csv).")
    ],
    labels: Annotated[
        Path, typer.Option("--labels", help="Manifest/slices Parquet with label columns, or RSNA label CSV.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Report folder to write.")],
    n_bootstrap: Annotated[
        int, typer.Option("--bootstrap", min=1, help="Study resamples for the intervals.")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold", min=0.0, max=1.0, help="Probability at which a label counts as positive."
        ),
    ] = 0.5,
    figures: Annotated[
        bool, typer.Option(help="Draw the PNG figures (ROC, PR, calibration, confusion).")
    ] = True,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Run whose operating point and split to report (default: studies.json of predict)."),
    ] = None,
    fold: Annotated[int | None, typer.Option("--fold", min=0, help="With --model: fold K of a run folder.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score PREDICTIONS against labels: metrics.json, ROC/PR/calibration/confusion PNGs, report.html."""
    from ichscan.evaluate import EvaluationInputError, evaluate
    from ichscan.evaluate.evaluation import operating_point_for
    from ichscan.train.resolve import RunError

    try:
        point, split = operating_point_for(predictions, model, fold)
        metrics = evaluate(
            predictions,
            labels,
            output,
            n_bootstrap=n_bootstrap,
            seed=seed,
            threshold=threshold,
            figures=figures,
            progress=progress,
            operating_point=point,
            split=split,
        )
    except (EvaluationInputError, FileNotFoundError, ValueError, RunError) as error:
        raise fail(str(error)) from error
    console = Console(highlight=False)
    counts = metrics["counts"]
    console.print(
        f"{counts['n_evaluated']:,} labelled slices evaluated ({counts['n_predictions_without_labels']:,} "
        f"predictions without labels, {counts['n_labels_without_predictions']:,} labels without predictions)"
    )
    for level in ("slice", "study"):
        if level not in metrics:
            continue
        table = Table(title=f"{level} level, 95% bootstrap intervals")
        for column in ("label", "AUC", "log loss", "F1", "recall", "precision"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for label in LABELS:
            entry = metrics[level]["per_label"][label]
            table.add_row(
                label, *(_interval(entry[k]) for k in ("auc", "log_loss", "f1", "recall", "precision"))
            )
        overall = metrics[level]["overall"]
        console.print(table)
        console.print(
            f"weighted log loss {_interval(overall['weighted_log_loss'])}, "
            f"mean AUC {_interval(overall['mean_auc'])}"
        )
    evaluated = (metrics.get("operating_point") or {}).get("evaluated")
    if evaluated:
        stored = metrics["operating_point"]
        console.print(
            f"study level at the run's operating point (sensitivity target {stored['target_sensitivity']:g}, "
            f"P(ICH) ≥ {stored['threshold']:.3f}): sensitivity {_share(evaluated['sensitivity'])} "
            f"({evaluated['tp']}/{evaluated['tp'] + evaluated['fn']}), specificity {_share(evaluated['specificity'])} "
            f"({evaluated['tn']}/{evaluated['tn'] + evaluated['fp']})", soft_wrap=True)
    else:
        console.print("no operating point for these predictions (give --model RUN, or predict with a calibrated run)")
    console.print(f"model validated on a {split or 'unknown'} split", soft_wrap=True)
    console.print(f"Report: {(output / 'report.html').resolve()}", soft_wrap=True)


@app.command("compare")
def compare_command(
    runs: Annotated[
        list[str], typer.Argument(help="Run folders (one row per fold), fold folders or `reference`.")
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Markdown table to write (a .csv is written beside it)."),
    ] = None,
) -> None:
    """Compare training runs: backbone, split, parameters, best validation log loss, AUC, F1, epochs, time."""
    from ichscan.evaluate.compare import (
        COMPARE_COLUMNS,
        HEADERS,
        compare_runs,
        formatted_rows,
        write_comparison,
    )

    comparison = compare_runs(runs)
    console = Console(highlight=False)
    for line in comparison.errors:
        console.print(f"skipped {line}", soft_wrap=True, markup=False)
    for line in comparison.notes:
        console.print(line, soft_wrap=True, markup=False)
    if comparison.table.empty:
        raise fail("no readable run among " + ", ".join(str(r) for r in runs))
    table = Table(title=f"{len(comparison.table)} run(s), best validation log loss first")
    for column in COMPARE_COLUMNS:
        table.add_column(HEADERS[column], justify="left" if column in ("run", "backbone") else "right")
    for cells in formatted_rows(comparison.table):
        table.add_row(*cells)
    console.print(table)
    if output is not None:
        written = write_comparison(comparison.table, output)
        console.print("wrote " + ", ".join(str(p) for p in written), soft_wrap=True)
