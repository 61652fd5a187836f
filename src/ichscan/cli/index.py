"""`ichscan index`: DICOM folder (+ RSNA labels) → manifest Parquet and its error list.

Exit status: 0 when every file read became a slice; 1 when nothing was indexed (no DICOM file
under the folder, or every file failed) or the run could not write its output; `PARTIAL_EXIT`
when some files were lost (the summary line says how many and where the list is)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer
from rich.console import Console

from ichscan.cli.app import app, fail
from ichscan.cli.dask_option import DaskOption, check_dask

MAX_ERROR_LINES: Final[int] = 20
PARTIAL_EXIT: Final[int] = 3


@app.command("index")
def index_command(
    dicom_dir: Annotated[
        Path,
        typer.Argument(help="Folder of DICOM files (flat or nested) and/or NIfTI volumes (.nii, .nii.gz), or one volume."),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Manifest Parquet to write.")],
    labels: Annotated[
        Path | None, typer.Option("--labels", help="RSNA label CSV (ID,Label rows).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Reader processes [default: CPUs].")
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks",
            help="Folder of NIfTI label volumes named like the input volumes (0 background, 1-5 = "
            "epidural, intraparenchymal, intraventricular, subarachnoid, subdural): slice labels, and "
            "masks written to masks/ next to the manifest.",
        ),
    ] = None,
    dask: DaskOption = None,
) -> None:
    """Read every slice header under DICOM_DIR into one manifest row per slice.

    A NIfTI volume becomes one series of axial slices with synthetic, path-derived ids.
    """
    from ichscan.dicom import LabelFileError, write_manifest
    from ichscan.nifti.index import MASKS_FOLDER, index_inputs
    from ichscan.parallel import optional_dask

    if not dicom_dir.exists():
        raise fail(f"{dicom_dir}: no such file or folder")
    if labels is not None and not labels.is_file():
        raise fail(f"{labels}: no such label file")
    if output.suffix != ".parquet":
        raise fail(f"{output}: the manifest must end in .parquet")
    if masks is not None and not masks.is_dir():
        raise fail(f"{masks}: no such masks folder")
    check_dask(dask)
    try:
        with optional_dask(dask) as executor:
            result = index_inputs(
                dicom_dir,
                labels_csv=labels,
                workers=workers,
                progress=progress,
                masks_dir=masks,
                masks_out=None if masks is None else output.parent / MASKS_FOLDER,
                executor=executor,
            )
    except (LabelFileError, OSError) as error:  # OSError: the Dask scheduler is unreachable
        raise fail(str(error)) from error
    except MemoryError as error:
        raise fail(f"out of memory while indexing {dicom_dir}") from error
    if result.n_files == 0:
        skipped = f" ({len(result.skipped)} skipped as not DICOM by name)" if result.skipped else ""
        raise fail(f"no DICOM files under {dicom_dir}{skipped}")
    try:
        written = write_manifest(result, output)
    except OSError as error:
        raise fail(f"cannot write {output}: {error.strerror or error}") from error

    console = Console(highlight=False)
    for name, count in result.summary().items():
        console.print(f"{name:>30}: {count:,}")
    for kind, count in result.errors_by_kind().items():
        console.print(f"{'errors, ' + kind:>30}: {count:,}")
    shown = result.errors.head(MAX_ERROR_LINES)
    for path, reason in zip(shown["path"], shown["reason"]):
        console.print(f"{path}: {reason}", soft_wrap=True, markup=False)
    if len(result.errors) > len(shown):
        console.print(
            f"... and {len(result.errors) - len(shown):,} more, see {written[1]}", soft_wrap=True
        )
    console.print("wrote " + ", ".join(str(path) for path in written), soft_wrap=True)
    if len(result.warnings):
        console.print(
            f"{result.warnings['series_instance_uid'].nunique():,} series with warnings (gaps, "
            f"fallback slice order), see {written[2]}",
            soft_wrap=True,
        )
    if result.manifest.empty:
        raise fail(f"no slice indexed: all {result.n_files:,} files failed (list: {written[1]})")
    if len(result.errors):
        Console(stderr=True, highlight=False).print(
            f"Lost {len(result.errors):,} of {result.n_files:,} files; "
            f"{len(result.manifest):,} slices indexed (list: {written[1]})",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(PARTIAL_EXIT)
