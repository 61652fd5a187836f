"""`ichscan predict`: trained run(s) + DICOM folder / manifest / cache → probabilities and triage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final, Literal

import typer
from rich.console import Console
from rich.table import Table

from ichscan.cli.app import app
from ichscan.cli.dask_option import DaskOption, check_dask

MAX_ERROR_LINES: Final[int] = 20
MAX_STUDY_ROWS: Final[int] = 15


def _fail(message: str) -> typer.Exit:
    """Print `Error: <message>` as one line on stderr; the exit to raise (status 1)."""
    Console(stderr=True, highlight=False).print(f"Error: {message}", soft_wrap=True, markup=False)
    return typer.Exit(1)


def parse_weights(text: str | None, n_models: int) -> list[float] | None:
    """`"0.6,0.4"` → [0.6, 0.4] (one per --model); None when not given."""
    if text is None:
        return None
    try:
        weights = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise _fail(f"--weights {text!r}: expected comma-separated numbers such as 0.6,0.4") from error
    if len(weights) != n_models:
        raise _fail(f"--weights {text!r}: {len(weights)} weight(s) for {n_models} --model run(s)")
    return weights


@app.command("predict")
def predict_command(
    input_path: Annotated[
        Path,
        typer.Argument(metavar="INPUT", help="DICOM folder (any layout), manifest .parquet or cache folder."),
    ],
    model: Annotated[
        list[str],
        typer.Option(
            "--model", "-m",
            help="Run folder (all its folds: an ensemble), one fold folder, or `reference`; repeat for an ensemble.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for the predictions.")],
    tta: Annotated[bool, typer.Option("--tta", help="Average with the horizontally flipped image.")] = False,
    weights: Annotated[
        str | None, typer.Option("--weights", help="Ensemble weights, one per --model, e.g. 0.6,0.4.")
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold", min=0.0, max=1.0,
            help="A subtype is present when its study max reaches this (also ICH when the run has no operating point).",
        ),
    ] = 0.5,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, help="Most suspicious slices listed per study.")
    ] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Slices per forward pass.")] = 32,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes for indexing/decoding (default: all CPUs).")
    ] = None,
    checkpoint: Annotated[str, typer.Option("--checkpoint", help="best, last or a .ckpt path.")] = "best",
    fold: Annotated[
        int | None, typer.Option("--fold", min=0, help="Use only fold K of each run folder (default: all folds).")
    ] = None,
    precision: Annotated[
        str, typer.Option("--precision", help="auto (bf16 where the CPU has it), fp32 or bf16.")
    ] = "auto",
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Keep the prepared HU cache here (else a temporary one).")
    ] = None,
    explain: Annotated[
        bool,
        typer.Option("--explain", help="Heatmaps of each study's most suspicious slices: OUT/explain/, report.html."),
    ] = False,
    explain_top: Annotated[
        int, typer.Option("--explain-top", min=1, help="Slices explained per study (with --explain).")
    ] = 3,
    explain_method: Annotated[
        str, typer.Option("--explain-method", help="gradcam, gradcampp or saliency (with --explain).")
    ] = "gradcam",
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    dask: DaskOption = None,
) -> None:
    """Predict every slice of INPUT: slices.parquet, submission.csv, studies.csv/json, errors.csv."""
    from ichscan.explain.heatmaps import StudyHeatmaps
    from ichscan.parallel import optional_dask
    from ichscan.predict import InputError, predict
    from ichscan.explain.run import explain_method as resolve_explain_method
    from ichscan.train import RunError

    if precision not in ("auto", "fp32", "bf16"):
        raise _fail(f"--precision {precision!r}: use auto, fp32 or bf16")
    try:
        resolve_explain_method(explain_method)
    except ValueError as error:
        raise _fail(f"--explain-method: {error}") from error
    if not input_path.exists():
        raise _fail(f"{input_path}: no such file or folder")
    chosen: Literal["auto", "fp32", "bf16"] = precision  # type: ignore[assignment]
    check_dask(dask)
    try:
        with optional_dask(dask) as executor:
            result = predict(
                model,
                input_path,
                output,
                tta=tta,
                weights=parse_weights(weights, len(model)),
                batch_size=batch_size,
                workers=workers,
                progress=progress,
                threshold=threshold,
                top_k=top_k,
                checkpoint=checkpoint,
                precision=chosen,
                cache_dir=cache,
                fold=fold,
                heatmaps=StudyHeatmaps(explain_top, explain_method) if explain else None,
                executor=executor,
            )
    except (InputError, RunError, FileNotFoundError, ValueError) as error:
        raise _fail(str(error)) from error
    except MemoryError as error:  # hardening: the environment, one line, no traceback
        raise _fail("out of memory; run stopped (try --workers 1)") from error

    console = Console(highlight=False)
    shown = result.errors.head(MAX_ERROR_LINES)
    for path, reason in zip(shown["path"], shown["reason"]):
        console.print(f"skipped {path}: {reason}", soft_wrap=True, markup=False)
    if len(result.errors) > len(shown):
        console.print(f"... and {len(result.errors) - len(shown):,} more, see {result.files['errors']}")
    table = Table(title=f"{len(result.studies)} studies, highest p(any ICH) first")
    for column in ("study", "patient", "slices", "max p(any)", "P(ICH)", "ICH", "subtypes present"):
        table.add_column(column, justify="right" if column in ("slices", "max p(any)", "P(ICH)") else "left")
    for row in result.studies.head(MAX_STUDY_ROWS).itertuples(index=False):
        table.add_row(
            str(row.study_instance_uid),
            str(row.patient_id),
            str(row.n_slices),
            f"{row.any:.3f}",
            "–" if row.ich_probability != row.ich_probability else f"{row.ich_probability:.3f}",
            "yes" if row.ich_detected else "no",
            str(row.subtypes_present).replace(";", ", ") or "–",
        )
    if len(result.studies):
        console.print(table)
        from ichscan.predict.pipeline import operating_point_text

        console.print(operating_point_text(result.operating_point, threshold), soft_wrap=True)
    console.print(
        f"{len(result.slices):,} slices predicted, {len(result.errors):,} file(s) skipped "
        f"in {result.timings['total']:.1f} s; wrote {output}/ (slices.parquet, submission.csv, "
        "studies.csv, studies.json, errors.csv"
        + (f", explain/, report.html: open {result.files['report']}" if "report" in result.files else "")
        + ")",
        soft_wrap=True,
    )
    if result.slices.empty:
        raise _fail(f"{input_path}: no slice could be predicted (see {result.files['errors']})")
