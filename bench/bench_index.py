"""Benchmark of `ichscan index`: header reading (files/s) and RSNA label parsing (rows/s).

Usage: .venv/bin/python bench/bench_index.py [--files 3000] [--label-images 752803] [-o docs/bench/index.md]

Writes N uncompressed 512×512 CT slices (tests/dicom_factory.py) into a temporary folder once,
then times in the same run: the naive baseline (a full `pydicom.dcmread` per file, as the seeds
do), `dcmread(stop_before_pixels=True)` per file, and `index_folder` with 1 and 2 workers. Then
parses an RSNA-sized label CSV (6 rows per image) with `read_rsna_labels` against a naive pandas
`read_csv` + `str.rsplit` + `pivot_table`. Files are in the page cache (just written) for every
method alike. Prints a Markdown section; `-o` also writes it (atomically).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pydicom
from pyarrow import csv as pa_csv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from dicom_factory import write_ct_slice  # noqa: E402

from ichscan.dicom import index_folder, read_rsna_labels  # noqa: E402
from ichscan.files import atomic_path  # noqa: E402
from ichscan.labels import LABELS  # noqa: E402


def write_slices(folder: Path, n_files: int) -> None:
    """N RSNA-like slices: 512×512 int16, ~20 series of tilted axial slices, names ID_<hex>.dcm."""
    pixels = np.zeros((512, 512), dtype=np.int16)
    per_series = 40
    for i in range(n_files):
        series, k = divmod(i, per_series)
        write_ct_slice(
            folder / f"ID_{i:09x}.dcm",
            pixels,
            position=(-125.0, -141.3 + 4.8 * k * 0.25, 62.7 + 4.8 * k * 0.968),
            orientation=(1.0, 0.0, 0.0, 0.0, 0.968148, -0.25038),
            series_uid=f"1.2.826.0.1.3680043.2.{series}",
            study_uid=f"1.2.826.0.1.3680043.1.{series}",
            patient_id=f"ID_{series:08x}",
            window_center="00036\\00036",
            window_width="00080\\00080",
        )


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds and CPU seconds (this process plus finished worker processes)."""

    wall: float
    cpu: float


def _cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(run: Callable[[], object]) -> Timing:
    start_wall, start_cpu = time.perf_counter(), _cpu_seconds()
    run()
    return Timing(time.perf_counter() - start_wall, _cpu_seconds() - start_cpu)


def bench_headers(n_files: int) -> list[tuple[str, Timing]]:
    with tempfile.TemporaryDirectory(prefix="ichscan-bench-") as tmp:
        folder = Path(tmp)
        write_slices(folder, n_files)
        files = sorted(str(p) for p in folder.iterdir())
        seconds = [
            (
                "naive: full `pydicom.dcmread` per file, 1 process",
                timed(lambda: [pydicom.dcmread(f) for f in files]),
            ),
            (
                "`dcmread(stop_before_pixels=True)` per file, 1 process",
                timed(lambda: [pydicom.dcmread(f, stop_before_pixels=True) for f in files]),
            ),
            (
                "`index_folder(workers=1)`",
                timed(lambda: index_folder(folder, workers=1, progress=False)),
            ),
            (
                "`index_folder(workers=2)`",
                timed(lambda: index_folder(folder, workers=2, progress=False)),
            ),
        ]
        result = index_folder(folder, workers=2, progress=False)
        assert len(result.manifest) == n_files and result.errors.empty, (
            "benchmark data must index cleanly"
        )
    return seconds


def bench_labels(n_images: int) -> list[tuple[str, Timing]]:
    rng = np.random.default_rng(0)
    ids = np.char.add("ID_", np.char.mod("%09x", rng.choice(16**9, n_images, replace=False)))
    rows = np.char.add(
        np.repeat(ids, len(LABELS)), np.tile(np.char.add("_", np.asarray(LABELS)), n_images)
    )
    with tempfile.TemporaryDirectory(prefix="ichscan-bench-") as tmp:
        path = Path(tmp) / "labels.csv"
        table = pa.table({"ID": rows, "Label": rng.integers(0, 2, len(rows))})
        pa_csv.write_csv(table, path, pa_csv.WriteOptions(quoting_style="none"))

        def naive() -> pd.DataFrame:
            frame = pd.read_csv(path)
            parts = frame["ID"].str.rsplit("_", n=1)
            frame["image_id"], frame["subtype"] = parts.str[0], parts.str[1]
            return frame.pivot_table(
                index="image_id", columns="subtype", values="Label", aggfunc="first"
            )

        return [
            ("naive: `read_csv` + `str.rsplit` + `pivot_table`", timed(naive)),
            ("`read_rsna_labels`", timed(lambda: read_rsna_labels(path))),
        ]


TABLE_HEAD = "| {what} | wall s | {unit}/s | × naive | CPU s | {unit} per CPU-s | × naive (CPU) |"


def _rows(timings: list[tuple[str, Timing]], n: int) -> list[str]:
    naive = timings[0][1]
    return [
        f"| {name} | {t.wall:.2f} | {n / t.wall:,.0f} | {naive.wall / t.wall:.1f} "
        f"| {t.cpu:.2f} | {n / t.cpu:,.0f} | {naive.cpu / t.cpu:.1f} |"
        for name, t in timings
    ]


def markdown(
    n_files: int, headers: list[tuple[str, Timing]], n_images: int, labels: list[tuple[str, Timing]]
) -> str:
    command = "`.venv/bin/python bench/bench_index.py " + " ".join(sys.argv[1:]) + "`"
    lines = [
        "## Index: header reading and label parsing",
        "",
        f"Command: {command}  ",
        f"Machine: {os.cpu_count()} cores {platform.machine()}, shared with other jobs "
        f"(load average {LOAD_AT_START:.1f} at the start: wall-clock rates are what was left to "
        "this run; per-CPU-second rates do not depend on the load); "
        f"Python {platform.python_version()}, pydicom {pydicom.__version__}, pandas {pd.__version__}.  ",
        f"Data: {n_files:,} uncompressed 512×512 CT slices (explicit VR little endian, ~0.5 MB each, in the "
        "page cache), written by `tests/dicom_factory.py`.",
        "",
        TABLE_HEAD.format(what="header reading", unit="files"),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += _rows(headers, n_files)
    n_rows = n_images * len(LABELS)
    lines += [
        "",
        f"Labels: {n_rows:,} rows (`ID_<hex>_<subtype>,Label`, {n_images:,} images, RSNA size).",
        "",
        TABLE_HEAD.format(what="label parsing", unit="rows"),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += _rows(labels, n_rows)
    return "\n".join(lines) + "\n"


LOAD_AT_START = os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--label-images", type=int, default=752_803)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    report = markdown(
        args.files, bench_headers(args.files), args.label_images, bench_labels(args.label_images)
    )
    print(report)
    if args.output:
        with atomic_path(args.output) as tmp:
            tmp.write_text(report)


if __name__ == "__main__":
    main()
