"""`ichscan explain` (Grad-CAM, Grad-CAM++, saliency PNGs) and `ichscan tsne` (embedding map)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from ichscan.cli.app import app, fail


@app.command("explain")
def explain(
    run: str = typer.Argument(..., help="run folder, fold folder or `reference` (one network: --fold K for several folds)"),
    input_path: Path = typer.Argument(..., metavar="INPUT", help="DICOM folder, manifest .parquet or HU cache"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for the PNGs and explanations.csv"),
    slices: list[str] = typer.Option([], "--slices", help="image_id to explain (repeatable); default: top slices"),
    top_k: int = typer.Option(3, "--top-k", min=1, help="slices per study when --slices is not given"),
    threshold: float = typer.Option(0.5, "--threshold", min=0.0, max=1.0, help="a class is explained from here"),
    checkpoint: str = typer.Option("best", "--checkpoint"),
    fold: int | None = typer.Option(None, "--fold", min=0, help="fold K of a run folder with several folds"),
) -> None:
    """Write heatmaps per predicted class overlaid on the windowed slice."""
    from ichscan.explain.run import explain_run
    from ichscan.predict import InputError
    from ichscan.train.run import RunError

    try:
        table = explain_run(run, input_path, out, image_ids=slices, top_k=top_k, threshold=threshold,
                            checkpoint=checkpoint, fold=fold)
    except (InputError, RunError, FileNotFoundError, ValueError) as exc:
        raise fail(exc)
    Console().print(f"{len(table)} explanation figure(s) in {out} (index: {out / 'explanations.csv'})")


@app.command("tsne")
def tsne(
    features: Path = typer.Argument(..., help="FEATURES directory of `ichscan embed`"),
    out: Path = typer.Option(..., "--out", "-o", help="PNG to write"),
    max_points: int = typer.Option(5000, "--max-points", min=3, help="random sample size for large sets"),
    perplexity: float = typer.Option(30.0, "--perplexity", min=1.0),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Plot slice embeddings with t-SNE, coloured by label."""
    import numpy as np

    from ichscan.explain import label_categories, plot_tsne, tsne_points
    from ichscan.train.sequence import read_features

    try:
        loaded = read_features(features)
        rows = np.arange(len(loaded.slices))
        if len(rows) > max_points:
            rows = np.sort(np.random.default_rng(seed).choice(rows, max_points, replace=False))
        points = tsne_points(loaded.embeddings[rows], perplexity=perplexity, seed=seed)
        plot_tsne(points, label_categories(loaded.labels[rows]), out,
                  title=f"t-SNE of {len(rows)} slice embeddings ({loaded.meta.get('backbone', '?')})")
    except ValueError as exc:
        raise fail(exc)
    Console().print(f"t-SNE plot: {out}")
