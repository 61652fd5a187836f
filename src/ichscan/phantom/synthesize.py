"""Write a phantom data set in the RSNA layout (see docs/ARCHITECTURE.md, "Phantom").

``DIR/ID_<hex>.dcm`` (flat), ``DIR/train.csv`` (``ID,Label``; six rows per image, LABELS order),
``DIR/masks/<series_instance_uid>.npz`` (``mask`` uint8 (z, H, W), bit k−1 ⇔ LABELS[k];
``image_ids`` (z,) in anatomical order; ``min_voxels``: the per-slice label threshold) and
``DIR/studies.csv``. Studies are generated and written one at a time (memory bounded); every file
goes through a temporary name and is renamed when complete.
"""

from __future__ import annotations

import csv
import os
import shutil
import zipfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ichscan.files import atomic_path
from ichscan.labels import LABELS, SUBTYPES
from ichscan.phantom.config import PhantomConfig
from ichscan.phantom.ct_writer import CTSeriesWriter, CTSliceDescription
from ichscan.phantom.hemorrhage import SUBTYPE_BIT
from ichscan.phantom.study import SeriesPlan, StudyPlan, plan_study, render_series

STUDIES_COLUMNS: tuple[str, ...] = (
    "patient_id", "study_instance_uid", "series_instance_uid", "n_slices", "subtypes",
    *(f"n_{name}" for name in LABELS), "age", "gantry_tilt", "storage", "transfer_syntax_uid",
)
OUTPUT_NAMES: tuple[str, ...] = ("train.csv", "studies.csv", "masks", "preview.png")


class OutputExistsError(FileExistsError):
    """The output folder already holds a phantom (or DICOM files) and overwrite was not asked."""


@dataclass
class SynthesisSummary:
    """What `synthesize` wrote."""

    out_dir: Path
    n_studies: int = 0
    n_series: int = 0
    n_images: int = 0
    positives: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LABELS, 0))


def slice_labels(mask: np.ndarray, min_voxels: int) -> np.ndarray:
    """Per-slice labels (z, 6) from a bit-coded mask (z, H, W): subtype k is positive on a slice
    when at least `min_voxels` voxels carry its bit; `any` = any subtype."""
    counts = np.stack(
        [np.count_nonzero(mask & np.uint8(SUBTYPE_BIT[s]), axis=(1, 2)) for s in SUBTYPES], axis=1
    )
    subtypes = counts >= max(1, min_voxels)
    return np.concatenate([subtypes.any(axis=1, keepdims=True), subtypes], axis=1).astype(np.uint8)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """`np.savez_compressed` with fast deflate (level 1): masks are mostly zeros, so level 1
    compresses almost as well at a fraction of the time. Readable with `np.load`."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


@dataclass(frozen=True)
class SliceSample:
    """A rendered slice kept for the preview."""

    hounsfield: np.ndarray
    mask: np.ndarray
    title: str


def _render_step(config: PhantomConfig) -> int:
    return config.render_step or (2 if config.size >= 384 else 1)


def write_series(
    out_dir: Path, plan: StudyPlan, series: SeriesPlan, config: PhantomConfig
) -> tuple[np.ndarray, list[SliceSample]]:
    """Render and write one series; returns its labels (z, 6) and a few slices for the preview."""
    desc = series.description
    writer = CTSeriesWriter(desc, plan.study, plan.patient)
    blocks = []
    samples: list[SliceSample] = []
    for block in render_series(plan, series, config.chunk_slices, _render_step(config)):
        for offset, hounsfield in enumerate(block.hounsfield):
            k = block.first_slice + offset
            image = CTSliceDescription(
                sop_instance_uid=series.sop_uids[k],
                instance_number=series.instance_numbers[k],
                image_position=tuple(float(v) for v in series.grid.position(k)),  # type: ignore[arg-type]
            )
            with atomic_path(out_dir / f"{series.image_ids[k]}.dcm") as tmp:
                writer.write(tmp, image, hounsfield)
        blocks.append(block.mask)
        # Preview candidates: the block's slice with the most blood, else one normal mid-head slice.
        if block.mask.any():
            k = int(np.argmax((block.mask > 0).sum(axis=(1, 2))))
        elif not samples and len(block.hounsfield) > 2:
            k = len(block.hounsfield) - 1
        else:
            continue
        title = f"study {plan.index} slice {block.first_slice + k}"
        samples.append(SliceSample(block.hounsfield[k], block.mask[k], title))
    mask = np.concatenate(blocks)
    labels = slice_labels(mask, series.min_label_voxels)
    with atomic_path(out_dir / "masks" / f"{desc.series_instance_uid}.npz") as tmp:
        save_npz(tmp, mask=mask, image_ids=np.array(series.image_ids), min_voxels=np.int32(series.min_label_voxels))
    return labels, samples


def _clear_previous(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix two data sets in one folder; with `overwrite`, remove the earlier phantom."""
    existing = [
        p for p in (out_dir.iterdir() if out_dir.exists() else ())
        if p.name in OUTPUT_NAMES or (p.name.startswith("ID_") and p.suffix == ".dcm")
    ]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{out_dir}: already holds a phantom or DICOM files (pass --overwrite, or overwrite=True, to replace them)"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def iter_studies(n_studies: int, seed: int, config: PhantomConfig) -> Iterator[StudyPlan]:
    """The study plans of the data set, one at a time (image ids unique across the set)."""
    taken: set[str] = set()
    for index in range(n_studies):
        yield plan_study(index, seed, config, taken)


@dataclass(frozen=True)
class StudyOutput:
    """What writing one study returns to the main process (labels, table rows, preview slices)."""

    label_rows: list[tuple[str, int]]
    study_rows: list[list[object]]
    counts: np.ndarray  # (6,) positive slices per label
    n_series: int
    n_images: int
    samples: list[SliceSample]


def write_study(out_dir: Path, plan: StudyPlan, config: PhantomConfig, keep_samples: bool) -> StudyOutput:
    """Render and write every series of one study; return its CSV rows."""
    label_rows: list[tuple[str, int]] = []
    study_rows: list[list[object]] = []
    counts = np.zeros(len(LABELS), dtype=np.int64)
    samples: list[SliceSample] = []
    n_images = 0
    for series in plan.series:
        labels, series_samples = write_series(out_dir, plan, series, config)
        order = np.random.default_rng([plan.seed, plan.index, series.description.series_number]).permutation(
            len(series.image_ids))
        for k in order:  # row order says nothing about slice order
            label_rows.extend((f"{series.image_ids[k]}_{name}", int(v)) for name, v in zip(LABELS, labels[k]))
        series_counts = labels.sum(axis=0, dtype=np.int64)
        desc = series.description
        study_rows.append([
            plan.patient.patient_id, plan.study.study_instance_uid, desc.series_instance_uid,
            len(series.image_ids), ";".join(s for s, c in zip(SUBTYPES, series_counts[1:]) if c > 0),
            *map(int, series_counts), plan.patient.age_years, desc.gantry_tilt_deg, _storage_name(series),
            desc.storage.transfer_syntax_uid,
        ])
        counts += series_counts
        n_images += len(series.image_ids)
        if keep_samples:
            samples.extend(series_samples)
    return StudyOutput(label_rows, study_rows, counts, len(plan.series), n_images, samples)


def _outputs(
    out: Path, n_studies: int, seed: int, config: PhantomConfig, workers: int, keep_samples: bool
) -> Iterator[StudyOutput]:
    """Study outputs in study order; with workers > 1, rendered in a process pool with a bounded
    number of studies in flight (plans, and so image ids, are always drawn in order here)."""
    plans = iter_studies(n_studies, seed, config)
    if workers <= 1:
        for plan in plans:
            yield write_study(out, plan, config, keep_samples)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[StudyOutput]] = deque()
        for plan in plans:
            pending.append(pool.submit(write_study, out, plan, config, keep_samples))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def synthesize(
    out_dir: str | os.PathLike[str],
    n_studies: int,
    seed: int = 0,
    config: PhantomConfig | None = None,
    progress: bool = True,
    overwrite: bool = False,
    preview: bool = False,
    workers: int = 1,
) -> SynthesisSummary:
    """Generate `n_studies` synthetic head-CT studies from `seed` into `out_dir` (RSNA layout).

    Deterministic: the same seed and config give identical files whatever `workers` is. Raises
    `OutputExistsError` when `out_dir` already holds phantom outputs and `overwrite` is false.
    """
    if n_studies < 1:
        raise ValueError(f"n_studies must be at least 1, got {n_studies}")
    config = config or PhantomConfig()
    out = Path(out_dir)
    _clear_previous(out, overwrite)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    summary = SynthesisSummary(out)
    keep: dict[str, list[SliceSample]] = {name: [] for name in ("normal", *SUBTYPES)}
    columns = [
        TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(),
        TextColumn("studies · {task.fields[images]} images"), TimeRemainingColumn(),
    ]
    with (
        atomic_path(out / "train.csv") as labels_tmp,
        atomic_path(out / "studies.csv") as studies_tmp,
        open(labels_tmp, "w", newline="") as labels_file,
        open(studies_tmp, "w", newline="") as studies_file,
        Progress(*columns, disable=not progress) as bar,
    ):
        task = bar.add_task("synth", total=n_studies, images=0)
        label_rows = csv.writer(labels_file)
        label_rows.writerow(["ID", "Label"])
        study_rows = csv.writer(studies_file)
        study_rows.writerow(STUDIES_COLUMNS)
        for output in _outputs(out, n_studies, seed, config, workers, preview):
            label_rows.writerows(output.label_rows)
            study_rows.writerows(output.study_rows)
            for name, count in zip(LABELS, output.counts):
                summary.positives[name] += int(count)
            summary.n_studies += 1
            summary.n_series += output.n_series
            summary.n_images += output.n_images
            _keep_for_preview(keep, output.samples)
            bar.update(task, advance=1, images=summary.n_images)
    if preview:
        from ichscan.phantom.preview import write_preview

        write_preview(out / "preview.png", [s for group in keep.values() for s in group])
    return summary


def _storage_name(series: SeriesPlan) -> str:
    s = series.description.storage
    if s.rsna_defect:
        return "rsna_defect"
    sign = "signed" if s.pixel_representation else "unsigned"
    return f"{sign}{s.bits_stored}_{int(-s.rescale_intercept)}"


def _keep_for_preview(keep: dict[str, list[SliceSample]], samples: list[SliceSample]) -> None:
    """Keep at most 3 slices per subtype and 3 normal ones (bounded memory)."""
    for sample in samples:
        bits = int(np.bitwise_or.reduce(sample.mask, axis=None))
        names = [s for s in SUBTYPES if bits & SUBTYPE_BIT[s]] or ["normal"]
        group = min(names, key=lambda n: len(keep[n]))
        if len(keep[group]) < 3:
            keep[group].append(sample)
