"""Benchmark: windowed 3-slice × 3-window batches from the HU cache vs a naive per-PNG pipeline.

Builds a synthetic 256² cache (default 40 series × 40 slices) in a temporary folder and measures
slices/s for
  1. cache → SliceDataset(offsets −1, 0, 1) → DataLoader (int16 batches), with workers and
     in the main process,
  2. the same plus `apply_windows` (brain/subdural/soft → 9 channels) on every batch: float32
     (fresh result, or written into a reused `out=`), uint8 grey levels, in the main process or
     inside the workers (collate_fn), and `--workers` processes at once that each read and window
     their share in-process (how DDP ranks load, one per core),
  3. `apply_windows` alone on one batch, 1 thread: the torch-ops path (the previous CPU
     implementation, still the one for GPU tensors) and the fused CPU kernel, float32 and uint8,
     with and without a reused output (interleaved, best of `--repeats`),
  4. the naive baseline of the seeds: one windowed RGB PNG per slice (written beforehand, not
     timed), read back with PIL for s−1, s, s+1 and stacked to 9 float channels, per item,
     through the same DataLoader settings.
Prints a Markdown section; ``--out docs/bench/loader.md`` also writes it (atomically).

    .venv/bin/python bench/bench_loader.py --out docs/bench/loader.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import torch
from PIL import Image
from torch.utils.data import Dataset, default_collate

from ichscan.data import ChannelSpec, SliceDataset, apply_windows, create_loader
from ichscan.data.windows import _fixed_windows_torch
from ichscan.files import atomic_path

NOTES_HEADING = "### Notes"
SPEC = ChannelSpec(windows=("brain", "subdural", "soft"), offsets=(-1, 0, 1))


def build_cache(root: Path, n_series: int, depth: int, size: int) -> pd.DataFrame:
    """Synthetic head-like HU volumes (air, skull ring, brain with noise) in the cache layout."""
    rng = np.random.default_rng(0)
    (root / "series").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    base = np.where(radius < 0.8, 35, -1000) + np.where((radius > 0.8) & (radius < 0.9), 1200, 0)
    rows = []
    for s in range(n_series):
        uid = f"1.2.840.{s}"
        noise = rng.normal(0, 8, (depth, size, size))
        np.save(root / "series" / f"{uid}.npy", (base[None] + noise).astype(np.int16))
        rows += [{"series_instance_uid": uid, "slice_index": z, "n_slices": depth,
                  "patient_id": f"P{s}"} for z in range(depth)]
    return pd.DataFrame(rows)


class PngSliceDataset(Dataset[dict[str, Any]]):
    """The seeds' way: each slice a windowed 3-channel PNG; neighbours read as separate files."""

    def __init__(self, png_dir: Path, slices: pd.DataFrame) -> None:
        self.png_dir = png_dir
        self.uids = slices["series_instance_uid"].tolist()
        self.z = slices["slice_index"].to_numpy()
        self.depth = slices["n_slices"].to_numpy()

    def __len__(self) -> int:
        return len(self.uids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        channels = []
        for offset in (-1, 0, 1):
            z = min(max(self.z[i] + offset, 0), self.depth[i] - 1)
            with Image.open(self.png_dir / f"{self.uids[i]}_{z:04d}.png") as image:
                channels.append(np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0)
        return {"x": torch.from_numpy(np.concatenate(channels)), "index": i}


def apply_windows_input(cache: Path, slices: pd.DataFrame, batch: int) -> torch.Tensor:
    """One int16 batch (B, 3, H, W) straight from the dataset, for timing `apply_windows` alone."""
    dataset = SliceDataset(cache, slices.head(batch), offsets=SPEC.offsets)
    return torch.stack([dataset[i]["hu"] for i in range(len(dataset))])


def write_pngs(cache: Path, png_dir: Path, slices: pd.DataFrame) -> None:
    png_dir.mkdir()
    single = ChannelSpec(windows=SPEC.windows, offsets=(0,))
    for uid in slices["series_instance_uid"].unique():
        volume = np.load(cache / "series" / f"{uid}.npy")
        windowed = apply_windows(volume[:, None], single)  # (z, 3, H, W)
        for z, image in enumerate((windowed * 255).round().astype(np.uint8)):
            Image.fromarray(image.transpose(1, 2, 0)).save(png_dir / f"{uid}_{z:04d}.png")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its live DataLoader workers."""
    process = psutil.Process()
    total = sum(process.cpu_times()[:2])
    for child in process.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.NoSuchProcess:
            continue
    return total


class ReusedOutput:
    """`apply_windows` into one output array per batch size, reused from batch to batch."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype
        self.buffers: dict[tuple[int, ...], torch.Tensor] = {}

    def __call__(self, hu: torch.Tensor) -> torch.Tensor:
        shape = (hu.shape[0], SPEC.n_channels, *hu.shape[2:])
        if shape not in self.buffers:
            self.buffers[shape] = torch.empty(shape, dtype=getattr(torch, self.dtype))
        return apply_windows(hu, SPEC, dtype=self.dtype, out=self.buffers[shape])  # type: ignore[arg-type]


def windowing_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batches windowed to uint8 inside the DataLoader worker (they arrive ready)."""
    batch = default_collate(items)
    batch["x"] = apply_windows(batch.pop("hu"), SPEC, dtype="uint8")
    return batch


def throughput(loader: Any, process: Callable[[dict[str, Any]], Any] | None,
               epochs: int) -> tuple[float, float]:
    """(slices per wall second, slices per CPU second) over `epochs` after one warm-up epoch."""
    for batch in loader:  # warm-up: workers started, page cache filled, kernels compiled
        if process is not None:
            process(batch)
    count, start, cpu = 0, time.perf_counter(), cpu_seconds()
    for _ in range(epochs):
        for batch in loader:
            if process is not None:
                x = process(batch)
                assert x.shape[1] == 9
            count += len(batch["index"])
    return count / (time.perf_counter() - start), count / (cpu_seconds() - cpu)


def _rank_throughput(cache: Path, slices: pd.DataFrame, batch: int, epochs: int,
                     barrier: Any, queue: Any) -> None:
    """One rank: its own in-process loader (workers=0) + uint8 windowing into a reused `out=`."""
    torch.set_num_threads(1)
    loader = create_loader(SliceDataset(cache, slices, offsets=SPEC.offsets), batch_size=batch,
                           shuffle=True, workers=0)
    window = ReusedOutput("uint8")
    for item in loader:  # warm-up
        window(item["hu"])
    barrier.wait()
    count, start = 0, time.perf_counter()
    for _ in range(epochs):
        for item in loader:
            assert window(item["hu"]).shape[1] == 9
            count += len(item["index"])
    queue.put((count, time.perf_counter() - start))


def ranks_throughput(cache: Path, slices: pd.DataFrame, ranks: int, batch: int,
                     epochs: int) -> tuple[float, float]:
    """Slices/s of `ranks` processes each reading and windowing its share of the series at once
    (what DDP ranks with in-process loading do): total slices over the slowest rank's time.
    The second figure is the same per CPU-second, assuming each rank keeps one core busy."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(ranks), context.Queue()
    series = slices["series_instance_uid"].unique()
    shares = [slices[slices["series_instance_uid"].isin(series[r::ranks])].reset_index(drop=True)
              for r in range(ranks)]
    processes = [context.Process(target=_rank_throughput, args=(cache, share, batch, epochs, barrier, queue))
                 for share in shares]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    count, elapsed = sum(r[0] for r in results), max(r[1] for r in results)
    return count / elapsed, count / (elapsed * ranks)


def best_of(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return max(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=40)
    parser.add_argument("--depth", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2,
                        help="interleaved rounds over the loader variants (best kept)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved runs of windowing alone")
    parser.add_argument("--naive-series", type=int, default=8, help="series for the slow baseline")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="ichscan-bench-loader-"))
    try:
        slices = build_cache(root / "cache", args.series, args.depth, args.size)
        dataset = SliceDataset(root / "cache", slices, offsets=SPEC.offsets)
        workers = create_loader(dataset, batch_size=args.batch, shuffle=True, workers=args.workers)
        main_only = create_loader(dataset, batch_size=args.batch, shuffle=True, workers=0)
        in_workers = create_loader(dataset, batch_size=args.batch, shuffle=True,
                                   workers=args.workers, collate_fn=windowing_collate)
        float_out, uint8_out, uint8_out_main = (ReusedOutput("float32"), ReusedOutput("uint8"),
                                                ReusedOutput("uint8"))
        w = args.workers
        variants: list[tuple[str, Any, Callable[[dict[str, Any]], Any] | None]] = [
            (f"cache → SliceDataset → DataLoader ({w} workers), int16 (B, 3, H, W)", workers, None),
            ("same, in the main process (workers=0, no shared-memory hand-over)", main_only, None),
            (f"{w} workers + `apply_windows` float32 in the main process, fresh result", workers,
             lambda b: apply_windows(b["hu"], SPEC)),
            (f"{w} workers + `apply_windows` float32, reused `out=`", workers,
             lambda b: float_out(b["hu"])),
            (f"{w} workers + `apply_windows` uint8, reused `out=`", workers,
             lambda b: uint8_out(b["hu"])),
            ("workers=0 + `apply_windows` uint8, reused `out=` (all in the main process)",
             main_only, lambda b: uint8_out_main(b["hu"])),
            (f"{w} workers windowing to uint8 in `collate_fn` (batches arrive windowed)",
             in_workers, lambda b: b["x"]),
        ]
        loader_runs: list[list[tuple[float, float]]] = [[] for _ in variants]
        rank_runs: list[tuple[float, float]] = []
        for _ in range(args.rounds):
            for runs, (_, loader, process) in zip(loader_runs, variants, strict=True):
                runs.append(throughput(loader, process, args.epochs))
            rank_runs.append(ranks_throughput(root / "cache", slices, args.workers, args.batch, args.epochs))
        del workers, main_only, in_workers

        batch = apply_windows_input(root / "cache", slices, args.batch)
        alone_float, alone_uint8 = ReusedOutput("float32"), ReusedOutput("uint8")
        alone: list[tuple[str, Callable[[], Any]]] = [
            ("torch ops, float32 (previous CPU implementation; the GPU path)",
             lambda: _fixed_windows_torch(batch, SPEC.windows, quantize=False)),
            ("fused kernel, float32, fresh result", lambda: apply_windows(batch, SPEC)),
            ("fused kernel, float32, reused `out=`", lambda: alone_float(batch)),
            ("fused kernel, uint8, fresh result", lambda: apply_windows(batch, SPEC, dtype="uint8")),
            ("fused kernel, uint8, reused `out=`", lambda: alone_uint8(batch)),
        ]
        for _, function in alone:  # compile / load the kernels before timing
            function()
        alone_runs: list[list[tuple[float, float]]] = [[] for _ in alone]
        for _ in range(args.repeats):
            for runs, (_, function) in zip(alone_runs, alone, strict=True):
                start, cpu = time.perf_counter(), cpu_seconds()
                function()
                runs.append((len(batch) / (time.perf_counter() - start),
                             len(batch) / max(cpu_seconds() - cpu, 1e-9)))

        naive_slices = slices[slices["series_instance_uid"].isin(
            slices["series_instance_uid"].unique()[: args.naive_series])]
        write_pngs(root / "cache", root / "png", naive_slices)
        naive = create_loader(PngSliceDataset(root / "png", naive_slices), batch_size=args.batch,
                              shuffle=True, workers=args.workers)
        naive_rate = throughput(naive, None, epochs=1)
        del naive
    finally:
        shutil.rmtree(root, ignore_errors=True)
    n = len(slices)
    command = ".venv/bin/python " + " ".join(["bench/bench_loader.py", *sys.argv[1:]])
    load = os.getloadavg()[0]
    rows = [(name, best_of(runs)) for (name, _, _), runs in zip(variants, loader_runs, strict=True)]
    rows.append((f"{args.workers} processes at once, each workers=0 + uint8 `out=` on its share of the series "
                 "(DDP ranks with in-process loading; per CPU-s assumes one busy core per rank)",
                 best_of(rank_runs)))
    rows.append(("naive: 3 windowed PNGs per slice read with PIL, stacked per item (seeds)",
                 naive_rate))
    table = "\n".join(
        f"| {name} | {wall:,.0f} | {wall / naive_rate[0]:.1f}× | {per_cpu:,.0f} | "
        f"{per_cpu / naive_rate[1]:.1f}× |"
        for name, (wall, per_cpu) in rows
    )
    alone_table = "\n".join(
        f"| {name} | {best_of(runs)[0]:,.0f} | {1e3 / best_of(runs)[0]:.3f} |"
        for (name, _), runs in zip(alone, alone_runs, strict=True)
    )
    mb = 1e6
    text = f"""## Loader: windowed 3-slice × 3-window batches from the HU cache

Command: `{command}`

Machine: {os.cpu_count()} cores {platform.machine()}, shared with other jobs (1-min load average
{load_before:.1f} before, {load:.1f} after the run), torch {torch.__version__}, 1 intra-op thread.
Cache of {args.series} series × {args.depth} slices at {args.size}² ({n} slices; naive baseline on
the first {args.naive_series} series), batch {args.batch}, shuffled, {args.epochs} epoch(s) after
one warm-up epoch per measurement, the loader variants interleaved over {args.rounds} rounds (best
kept; page cache warm for all). "per CPU-s" divides by the CPU time of the main process and its
workers: less sensitive to the other jobs than wall time (though they still share caches and
memory bandwidth); two idle cores give up to twice that figure.

| pipeline | slices/s (wall) | vs naive | slices per CPU-s | vs naive |
|---|---:|---:|---:|---:|
{table}

Windowing alone, one batch of {args.batch} (B, 3, {args.size}, {args.size}) int16 → (B, 9, …),
1 thread, interleaved, best of {args.repeats}:

| `apply_windows` variant | slices/s | ms per slice |
|---|---:|---:|
{alone_table}

Target ≥ 5,000 slices/s for windowed batches. Output per slice: 9 × {args.size}² float32 =
{9 * args.size ** 2 * 4 / mb:.2f} MB, uint8 = {9 * args.size ** 2 / mb:.2f} MB (the int16 input:
{3 * args.size ** 2 * 2 / mb:.2f} MB). With workers, each batch is collated into freshly allocated
shared memory (torch's default), whose page faults cost about as much CPU as reading the slices.
A fresh result array has the same cost, hence `out=`.
"""
    print(text)
    if args.out is not None:
        # the hand-written notes below the generated part survive a rerun
        previous = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        if NOTES_HEADING in previous:
            text += "\n" + previous[previous.index(NOTES_HEADING):]
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    main()
