"""`ichscan train`: train one experiment config on one fold into a run directory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ichscan.cli.app import app, fail


@app.command("train")
def train(
    config: Path = typer.Option(..., "--config", "-c", help="experiment YAML (e.g. configs/demo.yaml)"),
    fold: int | None = typer.Option(None, "--fold", "-f", help="validation fold (default: data.fold)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run from checkpoints/last.ckpt"),
    smoke: bool = typer.Option(False, "--smoke", help="shrink the run to under a minute on CPU"),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", help="override a config key, e.g. --set trainer.epochs=3 (repeatable)"
    ),
) -> None:
    """Train CONFIG; writes config.yaml, metrics.csv, checkpoints/{best,last}.ckpt, oof.parquet."""
    from ichscan.config import ConfigError, load_config
    from ichscan.config import smoke as shrink
    from ichscan.train import DataError, RunError, fit

    try:
        experiment = load_config(config, overrides)
        if smoke:
            experiment = shrink(experiment)
        run_dir = fit(experiment, fold=fold, resume=resume)
    except (ConfigError, DataError, RunError) as exc:
        raise fail(exc) from None
    except (FileNotFoundError, ValueError) as exc:  # a bad cache file named by the data layer
        raise fail(exc) from None
    Console().print(f"run directory: {run_dir}")
