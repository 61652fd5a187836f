"""Benchmark `--dask`: local process pool vs Dask LocalCluster for `index` and `prepare`, one run.

On the same files (bench_prepare's synthetic uncompressed 512² CT slices, page cache warm), in one
run, interleaved and best of `--repeats` each:

* `index_folder` with the local pool (1 and 2 processes) and on a LocalCluster of 1 and 2
  single-threaded worker processes;
* `prepare_cache` (512² → 256², head crop) likewise.

Cluster start-up is timed apart (it is paid once per command, not per slice). Every Dask output
is checked against the local one: same manifest rows, byte-identical cache arrays. CPU seconds
are user + system of this process and all its descendants (pool and Dask worker processes,
psutil), so they barely depend on other jobs' load; wall time does.

Usage: .venv/bin/python bench/bench_dask.py [--series 24] [--slices 32] [--repeats 3]
       [--out docs/bench/dask.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_prepare import SIZE, write_dataset

from ichscan.dicom import index_folder
from ichscan.parallel import dask_executor
from ichscan.prepare import prepare_cache

NOTES_HEADING = "### Notes"


def tree_cpu_seconds() -> float:
    """User + system CPU of this process and every live descendant, plus reaped children."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:4])  # user, system, children_user, children_system
    for child in me.children(recursive=True):
        try:
            times = child.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    start_cpu, start = tree_cpu_seconds(), time.perf_counter()
    value = run()
    return time.perf_counter() - start, tree_cpu_seconds() - start_cpu, value


def cache_bytes(cache: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((cache / "series").glob("*.npy"))}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=24)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/bench/dask.md"))
    args = parser.parse_args()

    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="ichscan-bench-dask-"))
    try:
        write_dataset(root / "dicom", args.series, args.slices)
        n_files = args.series * args.slices
        for path in (root / "dicom").rglob("*"):
            if path.is_file():
                path.read_bytes()  # page cache warm for every variant

        reference_manifest = index_folder(root / "dicom", workers=1, progress=False).manifest
        prepare_cache(reference_manifest, root / "reference", size=SIZE, workers=1, progress=False)
        reference_cache = cache_bytes(root / "reference")

        clusters: dict[int, Any] = {}
        startup: dict[int, float] = {}
        contexts = []
        for n in (1, 2):
            start = time.perf_counter()
            context = dask_executor(f"local:{n}", echo=lambda line: None)
            clusters[n] = context.__enter__()
            contexts.append(context)
            startup[n] = time.perf_counter() - start

        variants: list[tuple[str, int, Any]] = [
            ("local pool", 1, None), ("local pool", 2, None),
            ("Dask LocalCluster", 1, clusters[1]), ("Dask LocalCluster", 2, clusters[2]),
        ]
        best: dict[tuple[str, str, int], tuple[float, float]] = {}
        for attempt in range(args.repeats):
            for kind, n, executor in variants:
                seconds, cpu, result = timed(lambda n=n, executor=executor: index_folder(
                    root / "dicom", workers=n, progress=False, executor=executor))
                pd.testing.assert_frame_equal(result.manifest, reference_manifest)
                key = ("index", kind, n)
                best[key] = min(best.get(key, (float("inf"), 0.0)), (seconds, cpu))

                cache = root / f"cache-{kind.split()[0]}-{n}-{attempt}"
                seconds, cpu, result = timed(lambda n=n, executor=executor, cache=cache: prepare_cache(
                    reference_manifest, cache, size=SIZE, workers=n, progress=False, executor=executor))
                assert result.errors.empty and cache_bytes(cache) == reference_cache, f"{kind} {n} differs"
                shutil.rmtree(cache)
                key = ("prepare", kind, n)
                best[key] = min(best.get(key, (float("inf"), 0.0)), (seconds, cpu))
        for context in reversed(contexts):
            context.__exit__(None, None, None)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    lines = [
        "## Dask: local pool vs LocalCluster for index and prepare",
        "",
        f"Command: `.venv/bin/python bench/bench_dask.py --series {args.series} --slices {args.slices} "
        f"--repeats {args.repeats}` (commit `{commit()}`)",
        "",
        f"Machine: {os.cpu_count()} cores {platform.machine()} ({cpu_model()}), **shared** with other "
        "developers' jobs and a training run, so noisy: the 1-min load average was "
        f"{load_before[0]:.1f} before and {load_after[0]:.1f} after this run; Python "
        f"{platform.python_version()}. Data: {n_files:,} uncompressed 512² CT slices "
        f"({args.series} series × {args.slices}), page cache warm. Best of {args.repeats} interleaved runs "
        "each; every Dask result checked equal to the local one (same manifest, byte-identical cache).",
        "",
        "| step | where | workers | wall s | slices/s | CPU s | CPU ms/slice | speed-up vs 1 worker, same kind |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step in ("index", "prepare"):
        for kind, n, _ in variants:
            seconds, cpu = best[(step, kind, n)]
            one = best[(step, kind, 1)][0]
            lines.append(
                f"| {step} | {kind} | {n} | {seconds:.2f} | {n_files / seconds:,.0f} | {cpu:.2f} | "
                f"{1000 * cpu / n_files:.2f} | {one / seconds:.2f}× |"
            )
    lines += [
        "",
        f"LocalCluster start-up (paid once per command): {startup[1]:.1f} s for 1 worker, "
        f"{startup[2]:.1f} s for 2.",
        "",
    ]
    section = "\n".join(lines)
    notes = ""
    if args.out.exists():
        text = args.out.read_text()
        if NOTES_HEADING in text:
            notes = text[text.index(NOTES_HEADING):]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(section + ("\n" + notes if notes else ""))
    print(section)


if __name__ == "__main__":
    main()
