"""`ichscan synth`: write the synthetic head-CT phantom (the embedded data set)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ichscan.cli.app import app, fail
from ichscan.labels import SUBTYPES


def _parse_boost(values: list[str]) -> dict[str, float]:
    boost: dict[str, float] = {}
    for item in values:
        name, _, factor = item.partition("=")
        if name not in SUBTYPES or not factor:
            raise typer.BadParameter(f"{item!r}: expected SUBTYPE=FACTOR with SUBTYPE one of {', '.join(SUBTYPES)}")
        try:
            boost[name] = float(factor)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: {factor!r} is not a number") from None
    return boost


@app.command("synth")
def synth(
    out_dir: Annotated[Path, typer.Option("-o", "--out", help="output folder (flat ID_<hex>.dcm + train.csv + masks/)")],
    studies: Annotated[int, typer.Option("--studies", min=1, help="number of studies")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed, same files)")] = 0,
    size: Annotated[int, typer.Option("--size", help="rows = columns of each image")] = 512,
    slices_per_study: Annotated[
        int | None, typer.Option("--slices-per-study", help="fixed slices per series (default: skull base to vertex)")
    ] = None,
    slice_thickness: Annotated[float, typer.Option("--slice-thickness", help="mm")] = 5.0,
    positive_fraction: Annotated[
        float | None, typer.Option("--positive-fraction", help="share of studies with a hemorrhage (default 0.42)")
    ] = None,
    boost: Annotated[
        list[str] | None,
        typer.Option("--boost", help="raise a subtype's frequency, e.g. --boost epidural=8 (repeatable)"),
    ] = None,
    preview: Annotated[bool, typer.Option("--preview", help="also write DIR/preview.png")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a phantom already in DIR")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="processes")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", help="no progress bar")] = False,
) -> None:
    """Synthesise head-CT studies with known hemorrhages in the RSNA layout."""
    from pydantic import ValidationError

    from ichscan.phantom import OutputExistsError, PhantomConfig, synthesize

    settings: dict[str, object] = {
        "size": size,
        "slices_per_series": slices_per_study,
        "slice_thickness_mm": slice_thickness,
        "subtype_boost": _parse_boost(boost or []),
    }
    if positive_fraction is not None:
        settings["positive_fraction"] = positive_fraction
    try:
        config = PhantomConfig(**settings)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise typer.BadParameter(f"{where}: {first['msg']}") from None
    try:
        summary = synthesize(
            out_dir, studies, seed, config, progress=not quiet, overwrite=overwrite, preview=preview, workers=workers
        )
    except (OutputExistsError, NotADirectoryError, PermissionError) as error:
        raise fail(error) from None
    positives = ", ".join(f"{name} {count}" for name, count in summary.positives.items())
    Console().print(
        f"{summary.n_images} images in {summary.n_series} series of {summary.n_studies} studies → {out_dir} "
        f"(positive slices: {positives})",
        soft_wrap=True,
        highlight=False,
    )
