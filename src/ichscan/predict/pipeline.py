"""`predict`: DICOM folder, manifest or cache → per-slice probabilities, submission, study summary."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from ichscan.data.contract import InputContract
from ichscan.files import atomic_folder
from ichscan.labels import LABELS, N_LABELS
from ichscan.data.batches import iter_hu_batches
from ichscan.predict.ensemble import (
    EnsembleMember,
    Precision,
    combine_probabilities,
    load_members,
    member_probabilities,
    normalize_weights,
    prepare_model,
    resolve_precision,
    union_offsets,
)
from ichscan.predict.heatmaps import REPORT_FILE, remove_stale_explanations, write_report
from ichscan.predict.inputs import ERROR_COLUMNS, prepare_input
from ichscan.predict.outputs import (
    SLICE_COLUMNS,
    check_output_folder,
    published,
    submission_frame,
    write_csv,
    write_json,
    write_parquet,
)
from ichscan.predict.studies import label_thresholds, summarize_studies

HeatmapHook = Callable[[Any, Path, pd.DataFrame, Path, dict[str, float], bool], dict[str, list[dict[str, Any]]]]
"""(network, cache_dir, predicted slices, OUT, thresholds, progress) → heatmap records per study."""


@dataclass
class PredictionResult:
    """What `predict` wrote and the tables behind it; `timings` in seconds per stage."""

    out_dir: Path
    slices: pd.DataFrame
    studies: pd.DataFrame
    errors: pd.DataFrame
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    operating_point: Any = None


def predict_probabilities(
    members: Sequence[EnsembleMember],
    cache_dir: Path,
    slices: pd.DataFrame,
    *,
    weights: Sequence[float] | None = None,
    tta: bool = False,
    batch_size: int = 32,
    precision: Precision = "auto",
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Ensemble probabilities (len(slices), 6) float32, rows in the order of `slices`.

    Each batch of neighbour stacks is read once from the cache and shared by all members; each
    member turns it into its own input by its contract.
    """
    device = torch.device(device)
    w = normalize_weights(weights, len(members))
    autocast_dtype = resolve_precision(precision, device)
    offsets = union_offsets(members)
    members = [EnsembleMember(m.name, prepare_model(m.model, device), m.contract) for m in members]
    probabilities = np.full((len(slices), N_LABELS), np.nan, dtype=np.float32)
    with ExitStack() as stack:
        bar = stack.enter_context(
            Progress(
                TextColumn("predict"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                disable=not progress,
                transient=True,
            )
        )
        task = bar.add_task("slices", total=len(slices))
        stack.enter_context(torch.inference_mode())
        for rows, hu in iter_hu_batches(cache_dir, slices, offsets, batch_size):
            per_member = torch.stack(
                [
                    member_probabilities(m, hu, offsets, tta=tta, autocast_dtype=autocast_dtype, device=device)
                    for m in members
                ]
            )
            probabilities[rows] = combine_probabilities(per_member.cpu().numpy(), w)
            bar.advance(task, len(rows))
    return probabilities


def run_operating_point(models: Sequence[Path | str | EnsembleMember], fold: int | None = None) -> Any:
    """The stored operating point that applies to `models`: one `--model` naming one fold → that
    fold's; a run folder with several folds (their ensemble) → the run folder's, pooled over its
    folds. None for several `--model` entries or loaded members (their combination was never
    validated) and for runs without one."""
    from ichscan.train.operating_point import read_operating_point
    from ichscan.train.resolve import resolve_run

    if len(models) != 1 or isinstance(models[0], EnsembleMember):
        return None
    resolved = resolve_run(models[0], fold)
    return read_operating_point(resolved.folds[0] if len(resolved.folds) == 1 else resolved.source)


def resolve_models(
    models: Sequence[Path | str | EnsembleMember], weights: Sequence[float] | None, fold: int | None = None
) -> tuple[list[Path | EnsembleMember], list[float], int]:
    """Each `--model` resolved by `ichscan.train.resolve.resolve_run` (run folder, fold folder or
    ``reference``) into its fold runs, which share its weight equally (a k-fold ensemble), or only
    ``fold<K>`` with `fold`. Returns the entries, their weights and the stage (1 or 2); ValueError
    when stage-1 and stage-2 runs are mixed."""
    from ichscan.train.resolve import resolve_run

    entry_weights = normalize_weights(weights, len(models))
    expanded: list[Path | EnsembleMember] = []
    expanded_weights: list[float] = []
    stages = set()
    for model, weight in zip(models, entry_weights):
        if isinstance(model, EnsembleMember):
            expanded.append(model)
            expanded_weights.append(float(weight))
            stages.add(1)
            continue
        resolved = resolve_run(model, fold)
        stages.add(resolved.stage)
        expanded += resolved.folds
        expanded_weights += [float(weight) / len(resolved.folds)] * len(resolved.folds)
    if len(stages) > 1:
        raise ValueError("stage-2 runs and stage-1 runs cannot be mixed in one ensemble; "
                         "give stage-2 runs only (each runs its own stage 1)")
    return expanded, expanded_weights, stages.pop()


def shared_contract(contracts: Sequence[InputContract], names: Sequence[str]) -> InputContract:
    """The contract whose cache feeds every member; ValueError when members need different caches."""
    keys = {c.cache_key for c in contracts}
    if len(keys) > 1:
        described = ", ".join(f"{n}: size {c.cache_size}, crop {'on' if c.crop.enabled else 'off'}, spacing {c.spacing}"
                              for n, c in zip(names, contracts))
        raise ValueError(f"ensemble members were trained on different caches ({described}); "
                         "predict them separately")
    return contracts[0]


def predict(
    models: Sequence[Path | EnsembleMember],
    input: Path,
    out_dir: Path,
    tta: bool = False,
    weights: Sequence[float] | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    *,
    threshold: float | Mapping[str, float] = 0.5,
    top_k: int = 5,
    checkpoint: str = "best",
    precision: Precision = "auto",
    device: str = "cpu",
    cache_dir: Path | None = None,
    fold: int | None = None,
    operating_point: Any = "run",
    heatmaps: HeatmapHook | None = None,
    executor: Executor | None = None,
) -> PredictionResult:
    """Predict every slice of INPUT with one run or an ensemble of runs and write OUT/.

    `models`: run directories, resolved by `resolve_models` (a run folder is its k-fold ensemble,
    sharing its weight, or its fold `fold`; ``reference`` the shipped model), or loaded members.
    INPUT: a DICOM folder of any layout, a manifest Parquet or an HU cache. A new cache is prepared
    exactly as the models' input contract says (cache size, head crop), in `cache_dir` when given
    (kept, resumable) or else in a temporary folder inside `out_dir`; a cache given as INPUT must
    match the contract. Each model then applies its contract's one resize and its windows.
    Unusable files are reported in OUT/errors.csv and skipped. `threshold` (one value or per label)
    decides the subtypes present in the study summary; `top_k` slices are listed per study.

    `operating_point`: ``"run"`` (default) uses the one stored in the run (`run_operating_point`):
    the study score max p(any) is calibrated into ``ich_probability`` and ``ich_detected`` is
    decided at the threshold chosen on validation data; an `OperatingPoint` is used as given; None
    (or a run without one) falls back to ``max p(any) ≥ threshold["any"]``, uncalibrated.

    `heatmaps`: a hook called while the HU cache exists with the network to explain (the single
    run, the first ensemble member, the stage-1 network of the first stage-2 run), the cache, the
    predicted slice table, OUT, the thresholds and `progress`; it returns heatmap records per
    study UID, listed under `heatmaps` in studies.json and gathered in OUT/report.html
    (`ichscan.explain.heatmaps.StudyHeatmaps` draws them; `predict_explained` passes it).
    """
    overall = start = time.perf_counter()
    out_dir = Path(out_dir)
    thresholds = label_thresholds(threshold)
    explain_options = heatmaps
    if not models:
        raise ValueError("at least one model run is needed")
    point = run_operating_point(models, fold) if isinstance(operating_point, str) else operating_point
    models, weights, stage = resolve_models(models, weights, fold)
    if stage == 2:
        return _predict_sequence_runs(
            [Path(m) for m in models], Path(input), out_dir, tta=tta, weights=weights, batch_size=batch_size,
            workers=workers, progress=progress, thresholds=thresholds, top_k=top_k,
            cache_dir=cache_dir, explain_options=explain_options, operating_point=point, executor=executor,
        )
    path_runs = [Path(m) for m in models if not isinstance(m, EnsembleMember)]
    loaded = iter(load_members(path_runs, checkpoint=checkpoint)) if path_runs else iter(())
    members = [m if isinstance(m, EnsembleMember) else next(loaded) for m in models]
    normalize_weights(weights, len(members))
    contract = shared_contract([m.contract for m in members], [m.name for m in members])
    check_output_folder(out_dir, Path(input), cache_dir)  # hardening: OUT is replaced whole
    timings: dict[str, float] = {"load_models": time.perf_counter() - start}

    with ExitStack() as stack:
        staging = stack.enter_context(atomic_folder(out_dir))  # hardening: old or new OUT, never a mix
        prepared = _prepare_in(stack, Path(input), staging, cache_dir, contract, workers=workers,
                               progress=progress, executor=executor)
        timings.update(prepared.timings)
        slices = prepared.slices.reset_index(drop=True)
        start = time.perf_counter()
        probabilities = (
            predict_probabilities(
                members,
                prepared.cache_dir,
                slices,
                weights=weights,
                tta=tta,
                batch_size=batch_size,
                precision=precision,
                device=device,
                progress=progress,
            )
            if len(slices)
            else np.zeros((0, N_LABELS), dtype=np.float32)
        )
        timings["inference"] = time.perf_counter() - start
        heatmaps = _explain(members[0], prepared.cache_dir, slices, probabilities, staging, thresholds,
                            explain_options, progress, timings)
        result = _write_outputs(
            staging, slices, probabilities, prepared.errors, [m.name for m in members],
            normalize_weights(weights, len(members)).tolist(), tta, thresholds, top_k, timings, overall,
            heatmaps, point, [m.contract for m in members],
        )
    return published(result, staging, out_dir)


def operating_point_text(point: Any, threshold: float) -> str:
    """How `ich_detected` was decided, in one line (the report and the CLI say the same)."""
    if point is None:
        return (f"ICH: max p(any) ≥ {threshold:g}, uncalibrated (no operating point for these models; "
                "`ichscan calibrate RUN` stores one)")
    return (f"ICH: operating point for sensitivity {point.target_sensitivity:g} (P(ICH) ≥ {point.threshold:.3f} ⇔ "
            f"max p(any) ≥ {point.score_threshold:.4f}); on validation: sensitivity {point.sensitivity:.3f}, "
            f"specificity {point.specificity:.3f}, {point.n_studies} studies")


def _slice_table(slices: pd.DataFrame, probabilities: np.ndarray) -> pd.DataFrame:
    """Ids, patient and the six probabilities of every predicted slice (rows as in `slices`)."""
    id_columns = [c for c in SLICE_COLUMNS if c not in LABELS]
    table = slices[[*id_columns, "patient_id"]].copy()
    table[list(LABELS)] = probabilities
    return table


def _explain(
    loaded: Any,
    cache_dir: Path,
    slices: pd.DataFrame,
    probabilities: np.ndarray,
    out_dir: Path,
    thresholds: dict[str, float],
    hook: HeatmapHook | None,
    progress: bool,
    timings: dict[str, float],
) -> dict[str, list[dict[str, Any]]] | None:
    """Heatmaps of each study's most suspicious slices while the HU cache still exists (or None)."""
    if hook is None:
        return None
    start = time.perf_counter()
    heatmaps = (
        hook(loaded, cache_dir, _slice_table(slices, probabilities), out_dir, thresholds, progress)
        if len(slices) else {}
    )
    timings["explain"] = time.perf_counter() - start
    return heatmaps


def _write_outputs(
    out_dir: Path,
    slices: pd.DataFrame,
    probabilities: np.ndarray,
    input_errors: pd.DataFrame,
    model_names: list[str],
    model_weights: list[float],
    tta: bool,
    thresholds: dict[str, float],
    top_k: int,
    timings: dict[str, float],
    overall: float,
    heatmaps: dict[str, list[dict[str, Any]]] | None = None,
    operating_point: Any = None,
    contracts: Sequence[InputContract] = (),
) -> PredictionResult:
    """Write slices.parquet, submission.csv, the study summary and errors.csv atomically; with
    `heatmaps` (per study UID, from `--explain`) also list them in studies.json and write report.html."""
    start = time.perf_counter()
    table = _slice_table(slices, probabilities)
    studies, records = summarize_studies(table, thresholds, top_k, operating_point=operating_point)
    if heatmaps is not None:
        for record in records:
            record["heatmaps"] = heatmaps.get(record["study_instance_uid"], [])
    slice_table = table[list(SLICE_COLUMNS)]
    errors = input_errors[list(ERROR_COLUMNS)].reset_index(drop=True)
    files = {
        "slices": write_parquet(slice_table, out_dir / "slices.parquet"),
        "submission": write_csv(submission_frame(slice_table), out_dir / "submission.csv"),
        "studies_csv": write_csv(studies, out_dir / "studies.csv"),
        "studies_json": write_json(
            {
                "models": model_names,
                "weights": model_weights,
                "tta": tta,
                "thresholds": thresholds,
                "operating_point": None if operating_point is None else operating_point.model_dump(mode="json"),
                "splits": [c.split.model_dump(mode="json") if c.split is not None else None for c in contracts],
                "top_k": top_k,
                "n_slices": len(slice_table),
                "n_errors": len(errors),
                "studies": records,
            },
            out_dir / "studies.json",
        ),
        "errors": write_csv(errors, out_dir / "errors.csv"),
    }
    if heatmaps is not None:
        files["report"] = write_report(records, out_dir / REPORT_FILE,
                                       operating_point=operating_point_text(operating_point, thresholds["any"]))
    else:
        remove_stale_explanations(out_dir)
    timings["writing"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - overall
    return PredictionResult(out_dir, slice_table, studies, errors, files, timings, operating_point)


def _predict_sequence_runs(
    runs: Sequence[Path],
    input: Path,
    out_dir: Path,
    *,
    tta: bool,
    weights: Sequence[float] | None,
    batch_size: int,
    workers: int | None,
    progress: bool,
    thresholds: dict[str, float],
    top_k: int,
    cache_dir: Path | None,
    explain_options: HeatmapHook | None = None,
    operating_point: Any = None,
    executor: Executor | None = None,
) -> PredictionResult:
    """Stage-2 runs (`ichscan train-seq`): each runs its own stage 1 then its sequence model over
    every series; several runs are combined by (weighted) mean of probabilities."""
    from ichscan.data.contract import ContractError, read_contract
    from ichscan.train.sequence import predict_two_stage

    overall = start = time.perf_counter()
    w = normalize_weights(weights, len(runs))
    try:
        contracts = [read_contract(run) for run in runs]
        contract = shared_contract(contracts, [str(run) for run in runs])
    except ContractError as exc:
        raise ValueError(str(exc)) from exc
    backbone = _stage1_backbone(runs[0]) if explain_options is not None else None  # refuse before work
    check_output_folder(out_dir, Path(input), cache_dir)  # hardening: OUT is replaced whole
    timings: dict[str, float] = {"load_models": time.perf_counter() - start}
    with ExitStack() as stack:
        staging = stack.enter_context(atomic_folder(out_dir))  # hardening: old or new OUT, never a mix
        prepared = _prepare_in(stack, Path(input), staging, cache_dir, contract, workers=workers,
                               progress=progress, executor=executor)
        timings.update(prepared.timings)
        slices = prepared.slices.reset_index(drop=True)
        start = time.perf_counter()
        per_run = np.stack([
            predict_two_stage(run, prepared.cache_dir, slices, tta=tta or None, batch_size=batch_size,
                              progress=progress)
            for run in runs
        ]) if len(slices) else np.zeros((len(runs), 0, N_LABELS), dtype=np.float32)
        probabilities = combine_probabilities(per_run, w)
        timings["inference"] = time.perf_counter() - start
        heatmaps = _explain(backbone, prepared.cache_dir, slices, probabilities, staging, thresholds,
                            explain_options, progress, timings)
        result = _write_outputs(
            staging, slices, probabilities, prepared.errors, [str(run) for run in runs], w.tolist(), tta,
            thresholds, top_k, timings, overall, heatmaps, operating_point, contracts,
        )
    return published(result, staging, out_dir)


def _stage1_backbone(run: Path) -> Any:
    """The stage-1 network of a stage-2 run, for its heatmaps; RunError when the run has none."""
    from ichscan.train import load_model
    from ichscan.train.resolve import stage1_run
    from ichscan.train.sequence import load_sequence_model

    return load_model(stage1_run(run), load_sequence_model(run).stage1.get("checkpoint", "best"))


def _prepare_in(
    stack: ExitStack,
    input: Path,
    out_dir: Path,
    cache_dir: Path | None,
    contract: InputContract,
    **prepare_kwargs: Any,
) -> Any:
    """`prepare_input` as `contract` says into `cache_dir` (kept, resumable) or a temporary cache
    inside `out_dir` that `stack` removes when prediction ends."""
    if cache_dir is None:
        cache_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".cache-", dir=out_dir)))
    return prepare_input(input, Path(cache_dir), contract=contract, **prepare_kwargs)
