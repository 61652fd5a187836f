"""`ichscan prepare`: a manifest → the Hounsfield cache (one int16 volume per series).

Exit status: 0 when every slice was cached; 1 when nothing was cached, or the run stopped on an
error of its environment (disk full, out of memory, permission denied on the cache); 3 when some
slices were lost (the summary line says how many and where the list is)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console
from rich.markup import escape

from ichscan.cli.app import app, fail
from ichscan.cli.dask_option import DaskOption, check_dask

ERRORS_SHOWN: Final[int] = 20
PARTIAL_EXIT: Final[int] = 3


@app.command("prepare")
def prepare_command(
    manifest: Annotated[
        Path, typer.Argument(help="manifest.parquet written by `ichscan index`.", show_default=False)
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Cache folder (created; resumed if it exists).")
    ],
    size: Annotated[
        int, typer.Option(min=0, help="Cached slice side in pixels; 0 keeps the original matrix.")
    ] = 256,
    crop: Annotated[
        bool | None,
        typer.Option(
            "--crop/--no-crop",
            help="Crop to the head (black borders and head rest removed). "
            "Default: on when resizing, off with --size 0.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: all CPUs).")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    spacing: Annotated[
        float | None,
        typer.Option(
            "--spacing",
            min=0.01,
            metavar="MM",
            help="Resample every slice to this pixel spacing (mm) before crop and resize, e.g. 1.0.",
            show_default=False,
        ),
    ] = None,
    invert_monochrome1: Annotated[
        bool,
        typer.Option(
            "--invert-monochrome1",
            help="Invert the stored values of MONOCHROME1 slices before the rescale: repairs "
            "exports that stored them inverted (conformant MONOCHROME1 CT needs no inversion).",
        ),
    ] = False,
    dask: DaskOption = None,
) -> None:
    """Decode every series of MANIFEST once into int16 Hounsfield units under OUTPUT."""
    # imported here: pandas, OpenCV and scipy load only when this command runs, not for `ichscan --help`
    import pandas as pd

    from ichscan.parallel import optional_dask
    from ichscan.prepare import prepare_cache
    from ichscan.prepare.cache import ERRORS_FILE
    from ichscan.prepare.run import REQUIRED_COLUMNS
    from ichscan.prepare.series import OutputError

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    if not manifest.is_file():
        raise typer.BadParameter(f"{manifest}: no such file")
    try:
        table = pd.read_parquet(manifest)
    except Exception as error:  # pyarrow raises several types for a non-Parquet file
        reason = f"{type(error).__name__}: {error}".splitlines()[0]
        raise typer.BadParameter(f"{manifest}: cannot read the manifest ({reason})") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise typer.BadParameter(f"{manifest}: not a manifest, lacks column(s) {', '.join(missing)}")
    check_dask(dask)
    try:
        with optional_dask(dask) as executor:
            result = prepare_cache(
                table,
                output,
                size=size,
                crop=size > 0 if crop is None else crop,
                workers=workers,
                progress=not quiet,
                invert_monochrome1=invert_monochrome1,
                executor=executor,
                spacing=spacing,
            )
    except OutputError as error:  # disk full, permission denied: not a property of the input
        raise fail(f"{error.strerror}; run stopped (the series cached so far are kept, run again to resume)") from error
    except MemoryError as error:
        raise fail("out of memory; run stopped (try --workers 1; run again to resume)") from error
    except OSError as error:
        where = f"{error.filename}: " if error.filename else ""
        raise fail(f"{where}{error.strerror or error}; run stopped (run again to resume)") from error
    except ValueError as error:  # e.g. a cache built with other settings
        raise fail(error) from error

    for path, reason in result.errors.head(ERRORS_SHOWN).itertuples(index=False):
        console.print(f"[yellow]skipped[/yellow] {escape(f'{path}: {reason}')}")
    if len(result.errors) > ERRORS_SHOWN:
        console.print(f"… and {len(result.errors) - ERRORS_SHOWN} more")
    series = result.slices["series_instance_uid"].nunique() if len(result.slices) else 0
    console.print(
        f"cached {len(result.slices)} slices in {series} series "
        f"({result.prepared} prepared, {result.skipped} already done, {result.failed} failed); "
        f"{len(result.errors)} slices skipped (list: {output / ERRORS_FILE})",
    )
    total = len(result.slices) + len(result.errors)
    if len(result.slices) == 0:
        raise fail(
            f"nothing cached: all {total} slices of {manifest} failed (list: {output / ERRORS_FILE})"
            if total
            else f"nothing cached: {manifest} lists no slices"
        )
    if len(result.errors):
        Console(stderr=True, highlight=False).print(
            f"Lost {len(result.errors)} of {total} slices (list: {output / ERRORS_FILE})",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(PARTIAL_EXIT)
