"""Benchmark `ichscan prepare`: 512² uncompressed CT slices → 256² HU cache.

Measures, in one run on the same files:
* ichscan's `prepare_cache` (process pool across series, head crop, area-averaging resize), slices/s;
* the seeds' naive per-file pipeline (dcmread → HU → brain window → 256² PNG per slice, then the
  PNGs read back), one process, slices/s, and the ratio;
* peak memory (PSS summed over parent + workers, psutil) of `ichscan prepare` on two data
  sizes, to show memory does not grow with the number of series.

* with ``--against REF``: the `prepare_cache` of git revision REF (e.g. the commit before a speed-up),
  on the same files in the same run (interleaved, best of `--repeats` runs each on the small set,
  of two on the big one), and how far its cache is from the current one: identical, or the
  largest and mean |HU difference| and how many series got a different crop box (a change of
  resize kernel or head box is expected to move HU; the bench reports it, it does not fail).

Usage: .venv/bin/python bench/bench_prepare.py [--series 20] [--big-series 80] [--slices 32]
       [--workers 2] [--against REF] [--repeats 3] [--out docs/bench/prepare.md]
The Markdown section is printed and written to --out.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ichscan.files import atomic_path
from ichscan.prepare import prepare_cache
from ichscan.prepare.cache import read_slices

MATRIX = 512
SIZE = 256
BRAIN_WINDOW = (40.0, 80.0)

NOTES_HEADING = "### Notes"


def phantom_slice(rng: np.random.Generator, z: int) -> np.ndarray:
    """A 512² stored-value slice (intercept −1024): skull, brain, head rest, noise."""
    y, x = np.mgrid[:MATRIX, :MATRIX].astype(np.float32)
    radius = ((y - 240) / (190 - z)) ** 2 + ((x - 256) / (160 - z)) ** 2
    hu = np.full((MATRIX, MATRIX), -1000.0, dtype=np.float32)
    hu[radius < 1.0] = 1000.0
    hu[radius < 0.85] = 35.0
    hu[455:470, 80:432] = 300.0  # head rest
    hu += rng.normal(0.0, 8.0, hu.shape).astype(np.float32)
    return np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)


def write_dataset(folder: Path, n_series: int, n_slices: int, seed: int = 0) -> pd.DataFrame:
    """Write `n_series` × `n_slices` uncompressed 512² CT files; return their manifest."""
    rng = np.random.default_rng(seed)
    templates = [phantom_slice(rng, z) for z in range(8)]
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for series in range(n_series):
        series_uid, study_uid = generate_uid(), generate_uid()
        for z in range(n_slices):
            sop_uid = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, sop_uid, "CT"
            ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = f"P{series}", study_uid, series_uid
            ds.ImagePositionPatient = [0.0, 0.0, 5.0 * z]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.Rows = ds.Columns = MATRIX
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.PixelData = templates[(series + z) % len(templates)].tobytes()
            path = folder / f"ID_{series:04d}{z:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            rows.append(
                {
                    "image_id": path.stem,
                    "sop_instance_uid": sop_uid,
                    "study_instance_uid": study_uid,
                    "series_instance_uid": series_uid,
                    "position": 5.0 * z,
                    "slice_index": z,
                    "n_slices": n_slices,
                    "path": str(path),
                }
            )
    return pd.DataFrame(rows)


def naive_pipeline(paths: list[str], out_dir: Path) -> float:
    """The seeds' way, one file at a time; returns seconds for write + read back."""
    out_dir.mkdir(parents=True, exist_ok=True)
    center, width = BRAIN_WINDOW
    start = time.perf_counter()
    pngs = []
    for path in paths:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        window = np.clip((hu - (center - width / 2)) / width, 0.0, 1.0)
        image = Image.fromarray((window * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR)
        png = out_dir / (Path(path).stem + ".png")
        image.save(png)
        pngs.append(png)
    total = sum(int(np.asarray(Image.open(png)).sum() > -1) for png in pngs)
    assert total == len(paths)
    return time.perf_counter() - start


@dataclass
class TreeMemory:
    """Samples the memory of a process and its children until stopped; keeps the peak.

    Uses PSS (proportional set size): pages shared between the forked workers and the parent
    are split between them, so the sum is the tree's real footprint (summed RSS would count
    the shared interpreter and libraries once per process).
    """

    pid: int
    peak: int = 0
    _stop: bool = False

    def run(self) -> None:
        root = psutil.Process(self.pid)
        while not self._stop:
            try:
                processes = [root, *root.children(recursive=True)]
                rss = 0
                for process in processes:
                    try:
                        rss += process.memory_full_info().pss
                    except psutil.Error:
                        pass
                self.peak = max(self.peak, rss)
            except psutil.Error:
                return
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop = True


def cli_peak_rss(manifest_path: Path, cache: Path, workers: int) -> tuple[float, int]:
    """Run `ichscan prepare` as a user would; return (seconds, peak tree PSS in bytes)."""
    command = [sys.executable, "-m", "ichscan", "prepare", str(manifest_path), "-o", str(cache),
               "--size", str(SIZE), "--workers", str(workers), "--quiet"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeMemory(process.pid)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    _, stderr = process.communicate()
    seconds = time.perf_counter() - start
    sampler.stop()
    thread.join()
    if process.returncode != 0:
        raise RuntimeError(f"ichscan prepare failed: {stderr.decode()[-500:]}")
    return seconds, sampler.peak


def reference_prepare(ref: str, folder: Path):
    """`prepare_cache` as of git revision `ref`: its `ichscan/prepare/*.py`, imported as a copy.

    The copy lives in `folder` as package `ichscan_prepare_ref` (its `ichscan.prepare.` imports
    redirected to itself; everything else still comes from the installed `ichscan`).
    """
    repo = Path(__file__).resolve().parents[1]
    package = folder / "ichscan_prepare_ref"
    package.mkdir(parents=True)
    names = subprocess.run(
        ["git", "-C", str(repo), "ls-tree", "--name-only", ref, "src/ichscan/prepare/"],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    for name in names:
        if not name.endswith(".py"):
            continue
        text = subprocess.run(["git", "-C", str(repo), "show", f"{ref}:{name}"], check=True,
                              capture_output=True, text=True).stdout
        (package / Path(name).name).write_text(text.replace("ichscan.prepare.", "ichscan_prepare_ref."))
    sys.path.insert(0, str(folder))
    return importlib.import_module("ichscan_prepare_ref.run").prepare_cache


@dataclass(frozen=True)
class CacheDifference:
    """How two caches of the same files differ: per-voxel |HU difference| and crop boxes."""

    largest: int  # max |difference| in HU over all voxels (-1: some volume's shape differs)
    mean: float  # mean |difference| in HU over all voxels of same-shape volumes
    series: int
    other_box: int  # series whose crop box differs

    @property
    def identical(self) -> bool:
        return self.largest == 0 and self.other_box == 0

    def describe(self) -> str:
        if self.identical:
            return "caches identical."
        shapes = " (some volume shapes differ)" if self.largest < 0 else ""
        return (f"caches differ{shapes}: max |HU difference| {max(self.largest, 0)}, mean "
                f"{self.mean:.2f} HU; crop box different in {self.other_box} of {self.series} series.")


def cache_difference(one: Path, other: Path) -> CacheDifference:
    """Compare every series volume and crop box of cache `one` with cache `other`."""
    largest, total, voxels, same_shapes = 0, 0, 0, True
    paths = sorted((one / "series").glob("*.npy"))
    for path in paths:
        a, b = np.load(path), np.load(other / "series" / path.name)
        if a.shape != b.shape:
            same_shapes = False
            continue
        difference = np.abs(a.astype(np.int32) - b.astype(np.int32))
        largest = max(largest, int(difference.max(initial=0)))
        total += int(difference.sum())
        voxels += difference.size
    columns = ["series_instance_uid", "crop_y0", "crop_y1", "crop_x0", "crop_x1"]
    boxes = [read_slices(cache)[columns].drop_duplicates().set_index(columns[0]).sort_index()
             for cache in (one, other)]
    other_box = int((boxes[0] != boxes[1].reindex(boxes[0].index)).any(axis=1).sum())
    return CacheDifference(largest if same_shapes else -1, total / max(voxels, 1), len(paths),
                           other_box)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the pool's workers,
    joined when `prepare_cache` returns): unlike wall time, barely moved by other jobs' load."""
    return sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF),
                      resource.getrusage(resource.RUSAGE_CHILDREN))
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--big-series", type=int, default=80)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--against", default=None,
                        help="git revision whose prepare_cache is timed too (e.g. HEAD)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved runs of each prepare_cache on the small set (best kept)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/prepare.md"))
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ichscan-bench-prepare-"))
    try:
        big = write_dataset(root / "dicom", args.big_series, args.slices)
        series_uids = big["series_instance_uid"].unique()
        small = big[big["series_instance_uid"].isin(series_uids[: args.series])]
        n_small = len(small)

        # warm the page cache equally for both pipelines
        for path in big["path"]:
            Path(path).read_bytes()

        start = time.perf_counter()
        result = prepare_cache(small, root / "cache", size=SIZE, crop=True, workers=args.workers,
                               progress=False)
        ichscan_seconds = time.perf_counter() - start
        assert result.errors.empty and len(result.slices) == n_small

        reference = None
        if args.against is not None:
            old_prepare = reference_prepare(args.against, root / "reference-code")
            old_seconds = float("inf")
            for attempt in range(args.repeats):  # interleaved: reference, current, …; best of each
                start = time.perf_counter()
                old_prepare(small, root / f"cache-reference-{attempt}", size=SIZE, crop=True,
                            workers=args.workers, progress=False)
                old_seconds = min(old_seconds, time.perf_counter() - start)
                if attempt < args.repeats - 1:  # the first current run came before the loop
                    start = time.perf_counter()
                    prepare_cache(small, root / f"cache-again-{attempt}", size=SIZE, crop=True,
                                  workers=args.workers, progress=False)
                    ichscan_seconds = min(ichscan_seconds, time.perf_counter() - start)
            reference = (old_seconds, cache_difference(root / "cache", root / "cache-reference-0"))

        # steady state: the big data set (pool start-up and the last series' tail weigh less);
        # with a reference: interleaved, best of two each
        def timed_big(prepare: Any, folder: Path) -> tuple[float, float]:
            """(wall s, CPU s) of one prepare of the big set into `folder` (removed afterwards)."""
            start, start_cpu = time.perf_counter(), cpu_seconds()
            prepare(big, folder, size=SIZE, crop=True, workers=args.workers, progress=False)
            elapsed = (time.perf_counter() - start, cpu_seconds() - start_cpu)
            shutil.rmtree(folder)
            return elapsed

        big_seconds, big_cpu = float("inf"), float("inf")
        old_big_seconds, old_big_cpu = float("inf"), float("inf")
        for attempt in range(1 if args.against is None else 2):
            seconds, cpu = timed_big(prepare_cache, root / f"cache-big-library-{attempt}")
            big_seconds, big_cpu = min(big_seconds, seconds), min(big_cpu, cpu)
            if args.against is not None:
                seconds, cpu = timed_big(old_prepare, root / f"cache-big-reference-{attempt}")
                old_big_seconds, old_big_cpu = min(old_big_seconds, seconds), min(old_big_cpu, cpu)

        naive_seconds = naive_pipeline(list(small["path"]), root / "png")

        for name, frame in (("small", small), ("big", big)):
            frame.to_parquet(root / f"{name}.parquet")
        small_run = cli_peak_rss(root / "small.parquet", root / "cache-small", args.workers)
        big_run = cli_peak_rss(root / "big.parquet", root / "cache-big", args.workers)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    ichscan_rate = n_small / ichscan_seconds
    naive_rate = n_small / naive_seconds
    mib = 1024 * 1024
    lines = [
        "## prepare: DICOM → Hounsfield cache",
        "",
        f"Command: `.venv/bin/python bench/bench_prepare.py --series {args.series} --big-series "
        f"{args.big_series} --slices {args.slices} --workers {args.workers}"
        + (f" --against {args.against}" if args.against else "")
        + (f" --repeats {args.repeats}" if args.repeats != 3 else "") + "`",
        "",
        f"Machine: {os.cpu_count()} cores {platform.machine()} ({cpu_model()}), shared with other "
        f"jobs; Python {platform.python_version()}. Data: synthetic uncompressed {MATRIX}² CT slices "
        f"(12-bit, {args.slices} slices per series), page cache warm for both pipelines.",
        "",
        f"| pipeline ({n_small} slices, {args.series} series, {MATRIX}² → {SIZE}²) | seconds | slices/s | ratio |",
        "|---|---:|---:|---:|",
        f"| naive per-file (dcmread → HU → brain window → PNG, read back; 1 process) | "
        f"{naive_seconds:.2f} | {naive_rate:,.0f} | 1.0× |",
        f"| `prepare_cache` (int16 HU, head crop, area-averaging resize; {args.workers} workers) | "
        f"{ichscan_seconds:.2f} | {ichscan_rate:,.0f} | {ichscan_rate / naive_rate:.1f}× |",
    ]
    if reference is not None:
        old_seconds, difference = reference
        old_rate = n_small / old_seconds
        lines[-1:-1] = [
            f"| `prepare_cache` of `{args.against}` (same settings; {args.workers} workers) | "
            f"{old_seconds:.2f} | {old_rate:,.0f} | {old_rate / naive_rate:.1f}× |",
        ]
        lines += [
            "",
            f"Current vs `{args.against}` (best of {args.repeats} interleaved runs each): "
            f"{ichscan_rate / old_rate:.2f}× the slices/s; {difference.describe()} (A difference "
            "is reported, not an error: a change of resize kernel or head box moves HU.)",
        ]
    lines += [
        "",
        f"| same, big data set ({len(big)} slices, {args.big_series} series; "
        + ("best of two interleaved" if args.against else "one run") + ") | "
        "seconds | slices/s | vs naive | CPU ms/slice | slices/s if the cores were free |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    big_rows = [("`prepare_cache`", big_seconds, big_cpu)]
    if args.against is not None:
        big_rows.insert(0, (f"`prepare_cache` of `{args.against}`", old_big_seconds, old_big_cpu))
    for name, seconds, cpu in big_rows:
        per_slice = cpu / len(big)
        lines.append(
            f"| {name} | {seconds:.2f} | {len(big) / seconds:,.0f} | "
            f"{len(big) / seconds / naive_rate:.1f}× | {per_slice * 1e3:.2f} | "
            f"{min(args.workers, os.cpu_count() or 1) / per_slice:,.0f} |"
        )
    lines += [
        "",
        "Target: ≥ 1,000 slices/s. CPU ms/slice: user + system CPU time of the bench process and "
        "its pool workers per slice (other jobs' load barely moves it; it does raise it somewhat "
        "through shared caches); the last column is min(workers, cores) / that, the rate with the "
        "cores to ourselves. The naive pipeline also keeps only one 8-bit window; the cache "
        "keeps full int16 HU for any window later.",
        "",
        "| `ichscan prepare` (CLI, whole process tree) | series | slices | seconds | peak PSS |",
        "|---|---:|---:|---:|---:|",
        f"| small | {args.series} | {n_small} | {small_run[0]:.1f} | {small_run[1] / mib:,.0f} MiB |",
        f"| big | {args.big_series} | {len(big)} | {big_run[0]:.1f} | {big_run[1] / mib:,.0f} MiB |",
        "",
        f"Peak memory ratio big/small: {big_run[1] / small_run[1]:.2f} for "
        f"{args.big_series / args.series:.0f}× the series (flat: workers hold one series each; "
        "the parent holds the manifest and small per-series records). CLI seconds include "
        "interpreter start-up and imports (no torch since the OpenCV resize).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    # the hand-written notes below the generated part survive a rerun
    previous = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    if NOTES_HEADING in previous:
        text += "\n" + previous[previous.index(NOTES_HEADING):]
    with atomic_path(args.out) as tmp:
        tmp.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
