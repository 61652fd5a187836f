"""`ichscan pretrain`: SimCLR self-supervised pre-training of a backbone on unlabelled slices."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ichscan.cli.app import app, fail


@app.command("pretrain")
def pretrain(
    config: Path = typer.Option(..., "--config", "-c", help="SimCLR YAML (data, model, temperature, ...)"),
    overrides: list[str] = typer.Option([], "--set", "-s", help="override a key, e.g. --set trainer.epochs=3"),
) -> None:
    """Train a backbone with SimCLR; start `ichscan train` from it with model.weights_path=RUN/backbone.pt."""
    from ichscan.config import ConfigError
    from ichscan.train.pretrain import load_pretrain_config
    from ichscan.train.pretrain import pretrain as run_pretrain
    from ichscan.train.run import RunError

    try:
        run_dir = run_pretrain(load_pretrain_config(config, overrides))
    except (ConfigError, RunError, FileNotFoundError, ValueError) as exc:
        raise fail(exc) from None
    Console().print(f"run directory: {run_dir}\nbackbone weights: {run_dir / 'backbone.pt'}")
