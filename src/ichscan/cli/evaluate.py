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
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Score PREDICTIONS against labels: metrics.json, ROC/PR/calibration/confusion PNGs, report.html."""
    from ichscan.evaluate import EvaluationInputError, evaluate

    try:
        metrics = evaluate(
            predictions,
            labels,
            output,
            n_bootstrap=n_bootstrap,
            seed=seed,
            threshold=threshold,
            figures=figures,
            progress=progress,
        )
    except (EvaluationInputError, FileNotFoundError, ValueError) as error:
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
