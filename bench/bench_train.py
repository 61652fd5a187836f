"""Training throughput on CPU: the whole data path vs the same model's bare forward/backward.

Whole path  = Lightning ``Trainer.fit`` of ``SliceClassifier`` on a Hounsfield cache: mmap'd int16
              slices → DataLoader → windowing + augmentation on the batch → forward/backward/step.
Baseline    = the same network, loss and optimiser stepping on one pre-made float batch in a plain
              loop (no data, no Lightning): the most the hardware can train.
Also the speed switches alone (fp32 NCHW, channels_last, bf16 autocast + channels_last) on the
bare loop, and peak memory (max RSS). Every measurement runs in its own process.

    .venv/bin/python bench/bench_train.py --out docs/bench/train.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ichscan.labels import LABELS


def make_cache(root: Path, n_series: int, n_slices: int, size: int) -> Path:
    """A random-anatomy HU cache in the ARCHITECTURE.md layout (content does not matter for speed)."""
    cache = root / "cache"
    (cache / "series").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = []
    for s in range(n_series):
        uid = f"1.2.{s}"
        volume = rng.integers(-1000, 1500, size=(n_slices, size, size), dtype=np.int16)
        np.save(cache / "series" / f"{uid}.npy", volume)
        labels = (rng.random((n_slices, len(LABELS))) < 0.1).astype(np.float32)
        labels[:, 0] = labels[:, 1:].max(axis=1)
        for z in range(n_slices):
            rows.append({"image_id": f"ID_{s:04x}{z:04x}", "patient_id": f"P{s}", "study_instance_uid": f"1.{s}",
                         "series_instance_uid": uid, "slice_index": z, "n_slices": n_slices,
                         **dict(zip(LABELS, labels[z]))})
    pd.DataFrame(rows).to_parquet(cache / "slices.parquet", index=False)
    (cache / "meta.json").write_text(json.dumps({"size": size, "crop": True, "version": 1}))
    return cache


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config_dict(args: argparse.Namespace, cache: Path, out: Path, precision: str, channels_last: bool) -> dict:
    return {
        "name": "bench",
        "data": {"cache_dir": str(cache), "size": args.size, "windows": ["brain", "subdural", "soft"],
                 "split": {"method": "patient", "n_folds": 5}},
        "model": {"backbone": args.backbone},
        "loss": {"name": "rsna"},
        "augment": {"hflip": 0.5, "affine": {"p": 0.3, "degrees": 10, "translate": 0.05, "scale": 0.05}},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
        "trainer": {"epochs": 1, "batch_size": args.batch, "num_workers": args.workers, "precision": precision,
                    "accelerator": "cpu", "devices": 1, "channels_last": channels_last, "progress_bar": False},
        "output_dir": str(out),
    }


def child_bare(args: argparse.Namespace, precision: str, channels_last: bool) -> dict:
    """Plain loop on one pre-made windowed batch: forward, loss, backward, optimiser step."""
    from ichscan.config import ExperimentConfig
    from ichscan.train.module import build_model
    from ichscan.train.losses import create_loss
    from ichscan.train.optim import create_optimizer

    config = ExperimentConfig.model_validate(config_dict(args, Path("."), Path("."), precision, channels_last))
    model = build_model(config).train()
    x = torch.rand(args.batch, 3, args.size, args.size)
    y = (torch.rand(args.batch, len(LABELS)) < 0.1).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    loss_fn = create_loss("rsna")
    optimizer = create_optimizer("adamw", model, lr=1e-3, weight_decay=1e-4)
    bf16 = precision == "bf16-mixed"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss_fn(logits.float(), y).backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    elapsed = time.perf_counter() - start
    return {"images_per_s": args.steps * args.batch / elapsed, "peak_rss_mb": peak_rss_mb()}


def child_full(args: argparse.Namespace, precision: str, channels_last: bool) -> dict:
    """Lightning fit on the cache; images/s timed from batch `warmup` to the last batch."""
    import lightning.pytorch as pl

    from ichscan.config import ExperimentConfig
    from ichscan.train.datamodule import SliceDataModule
    from ichscan.train.module import SliceClassifier

    class Timer(pl.Callback):
        def __init__(self) -> None:
            self.start = 0.0
            self.end = 0.0

        def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: dict,
                                 batch_idx: int) -> None:
            if batch_idx == args.warmup:
                self.start = time.perf_counter()

        def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: object,
                               batch: dict, batch_idx: int) -> None:
            self.end = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        config = ExperimentConfig.model_validate(
            config_dict(args, Path(args.cache), Path(tmp), precision, channels_last))
        datamodule = SliceDataModule(config)
        module = SliceClassifier(config)
        timer = Timer()
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, precision=precision, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             limit_train_batches=args.warmup + args.steps, limit_val_batches=0,
                             callbacks=[timer])
        trainer.fit(module, datamodule=datamodule)
    return {"images_per_s": args.steps * args.batch / (timer.end - timer.start), "peak_rss_mb": peak_rss_mb()}


def run_child(args: argparse.Namespace, kind: str, precision: str, channels_last: bool) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--precision", precision,
               "--channels-last" if channels_last else "--no-channels-last", "--cache", args.cache,
               "--size", str(args.size), "--batch", str(args.batch), "--backbone", args.backbone,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--workers", str(args.workers),
               "--threads", str(args.threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="alternating repeats; the best of each is kept")
    parser.add_argument("--child", choices=["bare", "full"], default=None)
    parser.add_argument("--precision", default="32")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--cache", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.child:
        measure = child_bare if args.child == "bare" else child_full
        print(json.dumps(measure(args, args.precision, args.channels_last)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        n_series = max(10, (args.warmup + args.steps) * args.batch * 5 // 4 // 32 + 2)
        args.cache = str(make_cache(Path(tmp), n_series=n_series, n_slices=32, size=args.size))
        cases = [("bare", "32", False), ("bare", "32", True), ("bare", "bf16-mixed", True),
                 ("full", "32", True), ("full", "bf16-mixed", True)]
        best: dict[tuple[str, str, bool], dict] = {}
        ratios: dict[str, list[float]] = {"32": [], "bf16-mixed": []}
        for _ in range(args.repeats):  # alternate, so machine load hits every case alike
            latest: dict[tuple[str, str, bool], dict] = {}
            for case in cases:
                latest[case] = result = run_child(args, *case)
                if case not in best or result["images_per_s"] > best[case]["images_per_s"]:
                    best[case] = result
            for precision in ratios:  # whole/bare of runs adjacent in time (shared-machine noise)
                ratios[precision].append(latest[("full", precision, True)]["images_per_s"]
                                         / latest[("bare", precision, True)]["images_per_s"])

    def row(name: str, case: tuple[str, str, bool], reference: tuple[str, str, bool]) -> str:
        r, ref = best[case], best[reference]
        return (f"| {name} | {r['images_per_s']:.1f} | {r['images_per_s'] / ref['images_per_s']:.2f}× "
                f"| {r['peak_rss_mb']:.0f} |")

    base = ("bare", "32", False)
    lines = [
        "## Training throughput (CPU)",
        "",
        f"Command: `.venv/bin/python bench/bench_train.py{' --out ' + str(args.out) if args.out else ''}` "
        f"(backbone {args.backbone}, {args.size}² input, 3 windows, batch {args.batch}, AdamW, "
        f"{args.steps} timed steps after {args.warmup} warm-up, {args.threads} torch threads, "
        f"{args.workers} DataLoader worker, best of {args.repeats} alternating runs, each in its own process).",
        f"Machine: {os.cpu_count()} cores {platform.machine()} shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end), torch {torch.__version__}.",
        "",
        "### Speed switches on the bare forward/backward loop (pre-made tensors)",
        "",
        "| loop | images/s | vs fp32 NCHW | peak RSS MB |",
        "|---|---|---|---|",
        row("fp32, NCHW (naive baseline)", base, base),
        row("fp32, channels_last", ("bare", "32", True), base),
        row("bf16 autocast, channels_last", ("bare", "bf16-mixed", True), base),
        "",
        "### Whole data path vs bare loop (same model, precision and memory format)",
        "",
        "| precision | whole path images/s (best) | bare loop images/s (best) | whole / bare (median of adjacent pairs) | peak RSS MB (whole) |",
        "|---|---|---|---|---|",
    ]
    for precision in ("32", "bf16-mixed"):
        full, bare = best[("full", precision, True)], best[("bare", precision, True)]
        lines.append(f"| {precision} | {full['images_per_s']:.1f} | {bare['images_per_s']:.1f} | "
                     f"{float(np.median(ratios[precision])):.0%} | {full['peak_rss_mb']:.0f} |")
    lines += [
        "",
        "Whole path = `Trainer.fit` of `SliceClassifier` on a Hounsfield cache (mmap'd int16 slices → "
        "DataLoader → windowing + augmentation on the batch → forward/backward/step, Lightning loop "
        "included). Target: whole / bare ≥ 90 %.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from ichscan.files import atomic_path

        with atomic_path(args.out) as tmp_path:
            tmp_path.write_text(text)


if __name__ == "__main__":
    main()
