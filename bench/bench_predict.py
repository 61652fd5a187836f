"""Benchmark of `ichscan predict`: CPU latency of one 32-slice study, DICOM files → study summary.

Usage: .venv/bin/python bench/bench_predict.py [--repeats 3] [--out docs/bench/predict.md]

Synthesises one phantom study of 32 slices of 512×512 (`ichscan.phantom`, the default storage
mix) and the default demo model (configs/demo.yaml when present, else the `ExperimentConfig`
defaults; random weights: the timing does not depend on them). Each variant runs in its own
process (so peak memory is its own) with one untimed warm-up, then `--repeats` timed runs of
`ichscan.predict.predict` from the DICOM folder (index → prepare into a temporary cache →
inference → writing the outputs), reported as the median per stage. The naive baseline of the
seeds runs in the same way: per file `dcmread` → HU → resize → window → model on that one slice
(fp32, default memory format) → per-study max. Prints a Markdown section; `--out` also writes it
(atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "configs" / "demo.yaml"
N_SLICES = 32


def load_demo_config() -> tuple[Any, str]:
    """The demo experiment config and where it came from."""
    from ichscan.config import ExperimentConfig, load_config

    if DEMO_CONFIG.is_file():
        return load_config(DEMO_CONFIG), str(DEMO_CONFIG.relative_to(ROOT))
    return ExperimentConfig(), "ExperimentConfig() defaults (configs/demo.yaml not found)"


def demo_member(size_fallback: int = 256) -> tuple[Any, dict[str, Any]]:
    """The demo network with random weights as an ensemble member, and a description of it."""
    import torch

    from ichscan.data.contract import InputContract
    from ichscan.predict import EnsembleMember
    from ichscan.train.module import build_model, channel_spec

    config, source = load_demo_config()
    torch.manual_seed(0)
    model = build_model(config, pretrained=False).eval()
    size = config.data.size or size_fallback
    spec = channel_spec(config)
    info = {
        "config": source,
        "backbone": config.model.backbone,
        "size": size,
        "channels": spec.n_channels,
        "offsets": list(spec.offsets),
        "params": sum(p.numel() for p in model.parameters()),
    }
    # a run trained at the cache's own size (the demo cache is prepared at the network's size here)
    contract = InputContract.build(cache_size=size, crop=True, windows=tuple(config.data.windows),
                                   offsets=tuple(config.data.offsets), normalize=config.data.normalize)
    return EnsembleMember(config.model.backbone, model, contract), info


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process (imports, model, data and outputs), MB."""
    return {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_pipeline(
    dicom_dir: Path, repeats: int, precision: str, workers: int, tta: bool, threads: int
) -> dict[str, Any]:
    """Median stage timings of `predict` on the study (after one warm-up run)."""
    import torch

    from ichscan.predict import predict

    member, info = demo_member()
    torch.set_num_threads(threads)
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for attempt in range(repeats + 1):
            result = predict(
                [member],
                dicom_dir,
                Path(scratch) / f"out{attempt}",
                tta=tta,
                batch_size=32,
                workers=workers,
                progress=False,
                precision=precision,
            )  # type: ignore[arg-type]
            assert len(result.slices) == N_SLICES, f"{len(result.slices)} slices predicted"
            if attempt:
                runs.append(result.timings)
    stages = ("index", "prepare", "inference", "writing", "total")
    return {"model": info, **{s: statistics.median(r[s] for r in runs) for s in stages}, **peak_memory_mb()}


def run_naive(dicom_dir: Path, repeats: int, threads: int) -> dict[str, Any]:
    """The seeds' per-file pipeline: dcmread → HU → resize → window → model per slice → max.

    The warm-up pass reads one file only (it just triggers lazy initialisation)."""
    import numpy as np
    import pydicom
    import torch
    import torch.nn.functional as F

    from ichscan.data.windows import apply_windows
    from ichscan.dicom import to_hounsfield

    member, info = demo_member()
    torch.set_num_threads(threads)
    files = sorted(dicom_dir.glob("*.dcm"))
    totals = []
    for attempt in range(repeats + 1):
        start = time.perf_counter()
        probabilities = []
        with torch.inference_mode():
            for path in files if attempt else files[:1]:
                hu = torch.from_numpy(to_hounsfield(pydicom.dcmread(path)).astype(np.float32))
                image = F.interpolate(hu[None, None], size=(member.size, member.size), mode="bilinear")
                stack = image.repeat(1, len(member.channel_spec.offsets), 1, 1)
                x = apply_windows(stack, member.channel_spec)
                probabilities.append(torch.sigmoid(member.model(x))[0].numpy())
        study_max = np.max(np.stack(probabilities), axis=0)
        with tempfile.NamedTemporaryFile("w", suffix=".csv") as handle:
            np.savetxt(handle, study_max[None], delimiter=",")
        if attempt:
            totals.append(time.perf_counter() - start)
    return {"model": info, "total": statistics.median(totals), **peak_memory_mb()}


def child(args: argparse.Namespace) -> None:
    """Run one variant in this process and print its JSON result."""
    dicom_dir = Path(args.dicom)
    if args.child == "naive":
        result = run_naive(dicom_dir, args.repeats, args.threads)
    else:
        result = run_pipeline(dicom_dir, args.repeats, args.precision, args.workers, args.tta, args.threads)
    print(json.dumps(result))


def spawn(variant: str, dicom_dir: Path, repeats: int, threads: int, **options: Any) -> dict[str, Any]:
    """Run a variant in a fresh interpreter (own peak memory); return its JSON result."""
    command = [
        sys.executable,
        __file__,
        "--child",
        variant,
        "--dicom",
        str(dicom_dir),
        "--repeats",
        str(repeats),
        "--threads",
        str(threads),
    ]
    for key, value in options.items():
        if isinstance(value, bool):
            command += [f"--{key}"] if value else []
        else:
            command += [f"--{key}", str(value)]
    done = subprocess.run(
        command, check=True, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def synthesize_study(folder: Path) -> None:
    """One phantom study of N_SLICES slices of 512×512 in one series (default storage mix)."""
    from ichscan.phantom import PhantomConfig, synthesize

    config = PhantomConfig(slices_per_series=N_SLICES, second_series_fraction=0.0)
    synthesize(folder, 1, seed=0, config=config, progress=False)


def markdown(
    results: dict[str, dict[str, Any]], repeats: int, threads: int, command: str, load: tuple[float, float]
) -> str:
    """The Markdown section of the results."""
    naive = results["naive"]["total"]
    info = results["naive"]["model"]
    lines = [
        "## Prediction latency: one 32-slice study, DICOM files → study summary (CPU)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()} cores {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, torch threads {threads}; load average {load[0]:.1f} before and "
        f"{load[1]:.1f} after the run (other jobs shared the cores: compare the ratios measured in the "
        "same run rather than absolute times).  ",
        f"Model: {info['config']} → {info['backbone']} ({info['params'] / 1e6:.2f} M parameters, random "
        f"weights), input {info['channels']}×{info['size']}×{info['size']}, slice offsets {info['offsets']}.  ",
        f"Study: {N_SLICES} phantom slices of 512×512 (`ichscan.phantom`, default storage mix). "
        f"Median of {repeats} runs after a warm-up, each variant in its own process.",
        "",
        "| variant | index s | prepare s | inference s | writing s | total s | slices/s | speed-up vs naive | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        memory = f"{r['peak_rss_mb']:.0f}"
        if name == "naive":
            stages = "– | – | – | –"
        else:
            stages = " | ".join(f"{r[s]:.3f}" for s in ("index", "prepare", "inference", "writing"))
        lines.append(
            f"| {name} | {stages} | {r['total']:.3f} | {N_SLICES / r['total']:.1f} | {naive / r['total']:.2f}× | {memory} |"
        )
    lines += [
        "",
        "Naive: per file `pydicom.dcmread` → `to_hounsfield` → bilinear resize → `apply_windows` → model on one "
        "slice (fp32, contiguous), then the max over slices. `ichscan predict`: header index, one decode per "
        "series into an int16 HU cache (head crop + antialiased resize), batches of 32 neighbour stacks, "
        "channels_last, `torch.inference_mode`, bf16 autocast where stated, then slices.parquet, "
        "submission.csv, studies.csv/json and errors.csv written atomically. Total includes everything "
        "from the DICOM folder to the written study summary (model loading excluded for both). Peak RSS "
        "is the whole process (about 1 GB of it is the imported libraries); with 2 workers the index and "
        "prepare processes come on top.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown here")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads in every variant")
    parser.add_argument("--child", choices=("pipeline", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--dicom", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--tta", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from ichscan.files import atomic_path

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        dicom_dir = Path(scratch) / "study"
        synthesize_study(dicom_dir)
        n, t = args.repeats, args.threads
        results = {
            "naive": spawn("naive", dicom_dir, n, t),
            "predict, fp32, 1 worker": spawn("pipeline", dicom_dir, n, t, precision="fp32", workers=1),
            "predict, bf16 autocast, 1 worker": spawn(
                "pipeline", dicom_dir, n, t, precision="bf16", workers=1
            ),
            "predict, bf16 autocast, 2 workers": spawn(
                "pipeline", dicom_dir, n, t, precision="bf16", workers=2
            ),
            "predict, bf16 autocast + flip TTA, 1 worker": spawn(
                "pipeline", dicom_dir, n, t, precision="bf16", workers=1, tta=True
            ),
        }
    command = " ".join([".venv/bin/python bench/bench_predict.py", *sys.argv[1:]])
    text = markdown(results, args.repeats, args.threads, command, (load_before, os.getloadavg()[0]))
    print(text)
    if args.out is not None:
        with atomic_path(args.out) as tmp:
            tmp.write_text(text)


if __name__ == "__main__":
    main()
