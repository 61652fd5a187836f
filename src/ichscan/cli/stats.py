"""`ichscan stats` command(s)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ichscan.cli.app import app, fail


@app.command("stats")
def stats(
    table: Annotated[Path, typer.Argument(help="manifest.parquet or a cache's slices.parquet")],
    out_dir: Annotated[
        Optional[Path],  # noqa: UP045 (typer needs Optional)
        typer.Option("--out", "-o", help="folder for the PNGs and JSON (default: <table stem>_stats/ next to it)"),
    ] = None,
) -> None:
    """Label counts, co-occurrences and slices/series/studies/patients of a slices table."""
    from ichscan.data.statistics import (
        compute_statistics,
        print_statistics,
        read_slices_table,
        write_statistics,
    )

    console = Console()
    try:
        slices = read_slices_table(table)
    except (OSError, ValueError) as error:
        raise fail(error) from None
    statistics = compute_statistics(slices)
    print_statistics(statistics, console)
    target = out_dir if out_dir is not None else table.with_name(f"{table.stem}_stats")
    for path in write_statistics(statistics, target):
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
