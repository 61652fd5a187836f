"""`ichscan contract`: show a run's input contract, or (re)write it for a run that predates it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from ichscan.cli.app import app, fail


@app.command("contract")
def contract(
    run: str = typer.Argument(..., help="run folder, fold folder or `reference`"),
    write: bool = typer.Option(False, "--write", help="(re)write RUN/input.json from config.yaml + the cache's meta.json"),
    cache: Path | None = typer.Option(None, "--cache", help="with --write: the cache the run trained on "
                                      "(default: the config's data.cache_dir)"),
    fold: int | None = typer.Option(None, "--fold", min=0, help="only fold K of a run folder"),
) -> None:
    """Print the input contract (cache size, crop, resize, input size, windows, offsets, labels, split)."""
    from ichscan.data.contract import ContractError, read_contract
    from ichscan.train.resolve import RunError, resolve_run

    console = Console(highlight=False)
    try:
        resolved = resolve_run(run, fold)
        for run_dir in resolved.folds:
            if write:
                from ichscan.train.run import write_run_contract

                written = write_run_contract(run_dir, cache)
                console.print(f"wrote {run_dir / 'input.json'}", soft_wrap=True)
            else:
                written = read_contract(run_dir)
            console.print_json(json.dumps({"run": str(run_dir), **written.to_json()}))
    except (RunError, ContractError, ValueError) as exc:
        raise fail(exc) from None


@app.command("calibrate")
def calibrate(
    run: str = typer.Argument(..., help="run folder, fold folder or `reference`"),
    sensitivity: float = typer.Option(0.95, "--sensitivity", min=0.01, max=1.0,
                                      help="validation sensitivity the threshold must reach"),
    fold: int | None = typer.Option(None, "--fold", min=0, help="only fold K of a run folder"),
) -> None:
    """(Re)store the triage operating point from the run's out-of-fold predictions: Platt-calibrated
    study probability and the threshold reaching SENSITIVITY on validation studies."""
    from ichscan.train.operating_point import (
        OperatingPointError,
        operating_point_of,
        write_operating_point,
    )
    from ichscan.train.resolve import RunError, resolve_run

    console = Console(highlight=False)
    try:
        resolved = resolve_run(run, fold)
        targets = [(folder, [folder]) for folder in resolved.folds]
        if len(resolved.folds) > 1:
            targets.append((resolved.source, list(resolved.folds)))
        for folder, folds in targets:
            point = operating_point_of(folds, sensitivity)
            path = write_operating_point(folder, point)
            console.print(f"{path}: study max p(any) ≥ {point.score_threshold:.4f} (P(ICH) ≥ {point.threshold:.3f}); "
                          f"validation sensitivity {point.sensitivity:.3f}, specificity {point.specificity:.3f} "
                          f"on {point.n_studies} studies ({point.n_positive} positive)", soft_wrap=True)
    except (RunError, OperatingPointError) as exc:
        raise fail(exc) from None
