"""`ichscan embed` and `ichscan train-seq`: stage-2 features and sequence models over series."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ichscan.cli.app import app, fail


@app.command("embed")
def embed(
    run: str = typer.Argument(..., help="stage-1 run folder, fold folder or `reference` (--fold K for several folds)"),
    cache: Path | None = typer.Option(None, "--cache", help="HU cache to embed (default: the run's data.cache_dir)"),
    out: Path = typer.Option(..., "--out", "-o", help="FEATURES directory to write"),
    tta: bool = typer.Option(False, "--tta", help="average embeddings and logits over a horizontal flip"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    checkpoint: str = typer.Option("best", "--checkpoint", help="best, last or a .ckpt path"),
    fold: int | None = typer.Option(None, "--fold", min=0, help="fold K of a run folder with several folds"),
) -> None:
    """Store every slice's pooled embedding and logits, grouped by series in anatomical order."""
    from ichscan.train.run import RunError
    from ichscan.train.sequence import extract_features

    try:
        features = extract_features(run, cache, out, tta=tta, batch_size=batch_size, checkpoint=checkpoint,
                                    fold=fold)
    except (RunError, FileNotFoundError, ValueError) as exc:
        raise fail(exc)
    n_series = features.slices["series_instance_uid"].nunique()
    Console().print(f"features: {out} ({len(features.slices)} slices, {n_series} series, "
                    f"dimension {features.embeddings.shape[1]})")


@app.command("train-seq")
def train_seq(
    config: Path = typer.Option(..., "--config", "-c", help="stage-2 YAML (kind: two_stage or cnn_lstm)"),
    fold: int | None = typer.Option(None, "--fold", "-f", help="validation fold (default: data.fold)"),
    overrides: list[str] = typer.Option([], "--set", "-s", help="override a key, e.g. --set trainer.epochs=3"),
) -> None:
    """Train a sequence model (BiLSTM/BiGRU/dilated conv) or an end-to-end CNN-LSTM over series."""
    from ichscan.config import ConfigError
    from ichscan.train.run import RunError
    from ichscan.train.sequence import fit_sequence, load_sequence_config

    try:
        run_dir = fit_sequence(load_sequence_config(config, overrides), fold=fold)
    except (ConfigError, RunError, FileNotFoundError, ValueError) as exc:
        raise fail(exc)
    Console().print(f"run directory: {run_dir}")
