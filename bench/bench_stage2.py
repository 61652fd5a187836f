"""Stage 2, SimCLR and explanations on the phantom; prints a Markdown section (docs/bench/stage2.md).

    .venv/bin/python bench/bench_stage2.py --work /tmp/ichscan-bench-stage2 > docs/bench/stage2.md

Data: a training phantom (seed 0) and a separate held-out phantom (seed 1), indexed and prepared
with the ichscan CLI; every quality number is measured on the held-out studies.
1. Stage 1: `--backbone` (default the demo's half-width ResNet-18) on slices s−1, s, s+1 × 3 windows (patient split, 4 folds, fold 0).
   Stage 2 on its embeddings (`ichscan embed`): BiLSTM, BiGRU, dilated conv; and the end-to-end
   CNN-LSTM. Baselines: stage 1 alone and the prior (training label means).
2. SimCLR on the unlabelled training slices, then fine-tuning on 5 % of the labels, vs from scratch.
3. Pointing game of the stage-1 model (Grad-CAM, Grad-CAM++, saliency) against the phantom masks,
   per label, with the naive baseline of a uniformly random point (expected hit rate = mask area).
4. Speed of the vectorised pieces against naive Python loops.
Steps already done in --work are reused (delete it to start over).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ichscan.labels import LABELS

ICHSCAN = [sys.executable, "-m", "ichscan"]


def run_cli(args: list[str], log: list[str], done: bool) -> None:
    """Run an ichscan command quietly unless its output exists; remember it for the report."""
    log.append("ichscan " + shlex.join(args))
    if not done:
        subprocess.run([*ICHSCAN, *args], check=True, stdout=subprocess.DEVNULL)


def phantom(work: Path, name: str, studies: int, seed: int, size: int, log: list[str], extra: list[str]) -> Path:
    """Synthesised, indexed and prepared phantom → its cache directory."""
    dicom, manifest, cache = work / f"{name}-dicom", work / f"{name}.parquet", work / f"{name}-cache"
    run_cli(["synth", "-o", str(dicom), "--studies", str(studies), "--seed", str(seed), "--size", str(size),
             "--quiet", "--overwrite", *extra], log, (dicom / "train.csv").exists())
    run_cli(["index", str(dicom), "--labels", str(dicom / "train.csv"), "-o", str(manifest), "--no-progress"], log,
            manifest.exists())
    run_cli(["prepare", str(manifest), "-o", str(cache), "--size", str(size)], log,
            (cache / "slices.parquet").exists())
    return cache


BACKBONE = "resnet18_half"  # set from --backbone in main()
STAGE1 = f"stage 1: {BACKBONE} (s−1, s, s+1)"


def stage1_config(name: str, cache: Path, runs: Path, epochs: int, size: int, **changes: Any) -> Any:
    from ichscan.config import ExperimentConfig

    raw: dict[str, Any] = {
        "name": name,
        "data": {"cache_dir": str(cache), "size": size, "windows": ["brain", "subdural", "soft"],
                 "offsets": [-1, 0, 1],
                 "split": {"method": "patient", "n_folds": 4, "seed": 0}, "fold": 0},
        "model": {"backbone": BACKBONE},
        "loss": {"name": "rsna"},
        "augment": {"hflip": 0.5, "affine": {"p": 0.3, "degrees": 10}},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
        "trainer": {"epochs": epochs, "batch_size": 32, "num_workers": 0, "accelerator": "cpu", "devices": 1,
                    "progress_bar": False, "precision": "32"},
        "output_dir": str(runs),
    }
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return ExperimentConfig.model_validate(raw)


def train_stage1(config: Any) -> Path:
    from ichscan.train import fit

    run_dir = config.run_dir()
    if not (run_dir / "oof.parquet").exists():
        fit(config)
    return run_dir


def holdout_labels(cache: Path) -> tuple[pd.DataFrame, np.ndarray]:
    from ichscan.prepare import read_slices

    slices = read_slices(cache).sort_values(["series_instance_uid", "slice_index"]).reset_index(drop=True)
    return slices, slices[list(LABELS)].to_numpy(dtype=np.float64)


def scores(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    from ichscan.metrics import roc_auc, weighted_log_loss

    aucs = roc_auc(y_true, y_prob)
    defined = [v for v in aucs.values() if math.isfinite(v)]
    return {"wll": float(weighted_log_loss(y_true, y_prob)), "auc_any": float(aucs.get("any", math.nan)),
            "auc_mean": float(np.mean(defined)) if defined else math.nan}


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def naive_sequence_features(embeddings: torch.Tensor, logits: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Per-slice Python loop reference for `sequence_features`."""
    batch, steps, dim = embeddings.shape
    out = torch.zeros(batch, steps, 3 * dim + logits.shape[-1])
    for b, length in enumerate(lengths):
        for t in range(length):
            prev, nxt = embeddings[b, max(t - 1, 0)], embeddings[b, min(t + 1, length - 1)]
            e = embeddings[b, t]
            out[b, t] = torch.cat([e, e - prev, e - nxt, logits[b, t]])
    return out


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    views = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    n, total = z1.shape[0], 0.0
    for i in range(2 * n):
        sims = [float(views[i] @ views[k]) / temperature for k in range(2 * n) if k != i]
        positive = float(views[i] @ views[(i + n) % (2 * n)]) / temperature
        total += -(positive - math.log(sum(math.exp(s) for s in sims)))
    return total / (2 * n)


def speed_section() -> list[str]:
    from ichscan.models.sequence import mask_from_lengths, sequence_features
    from ichscan.models.simclr import nt_xent_loss

    torch.manual_seed(0)
    lengths = [int(v) for v in torch.randint(20, 61, (32,))]
    emb, lgt = torch.randn(32, 60, 512), torch.randn(32, 60, 6)
    mask = mask_from_lengths(torch.tensor(lengths), 60)
    torch.testing.assert_close(sequence_features(emb, lgt, mask), naive_sequence_features(emb, lgt, lengths))
    fast = timed(lambda: sequence_features(emb, lgt, mask))
    slow = timed(lambda: naive_sequence_features(emb, lgt, lengths), repeat=1)
    from ichscan.models.sequence import create_sequence_model
    from ichscan.train.sequence import sequence_probabilities

    model = create_sequence_model("lstm", 512, hidden=64, layers=2).eval()
    uids = np.repeat(np.arange(256), 40)
    series_emb, series_logits = np.random.default_rng(0).normal(size=(2, len(uids), 512)).astype(np.float32)
    series_logits = series_logits[:, :6].copy()
    batched = timed(lambda: sequence_probabilities(model, uids, series_emb, series_logits, batch_size=64), 1)
    single = timed(lambda: sequence_probabilities(model, uids, series_emb, series_logits, batch_size=1), 1)
    z1, z2 = torch.randn(128, 128), torch.randn(128, 128)
    assert abs(float(nt_xent_loss(z1, z2, 0.1)) - naive_nt_xent(z1, z2, 0.1)) < 1e-3
    fast_nt = timed(lambda: nt_xent_loss(z1, z2, 0.1))
    slow_nt = timed(lambda: naive_nt_xent(z1, z2, 0.1), repeat=1)
    return [
        "| operation | vectorised / batched | naive loop | speed-up |",
        "|---|---|---|---|",
        f"| `sequence_features`, 32 series × ≤60 slices × 512-d | {fast * 1e3:.2f} ms | {slow * 1e3:.0f} ms | "
        f"{slow / fast:.0f}× |",
        f"| `nt_xent_loss`, 2 × 128 views × 128-d | {fast_nt * 1e3:.2f} ms | {slow_nt * 1e3:.0f} ms | "
        f"{slow_nt / fast_nt:.0f}× |",
        f"| stage-2 BiLSTM inference, 256 series × 40 slices × 512-d: padded batches of 64 vs one series at a "
        f"time | {batched * 1e3:.0f} ms | {single * 1e3:.0f} ms | {single / batched:.1f}× |",
    ]


def pointing_section(run_dir: Path, cache: Path, dicom: Path, max_slices: int) -> list[str]:
    """Pointing game per label and method on true-positive held-out slices, vs a random point."""
    from ichscan.explain.pointing import label_masks, pointing_game_by_label
    from ichscan.explain.run import METHOD_TITLES, explain_inputs, mask_to_input
    from ichscan.data.batches import iter_hu_batches
    from ichscan.train import load_model

    loaded = load_model(run_dir)
    slices, y_true = holdout_labels(cache)
    positive = np.flatnonzero(y_true[:, 0] == 1)[:max_slices]
    chosen = slices.iloc[positive].reset_index(drop=True)
    bits = []
    for uid, rows in chosen.groupby("series_instance_uid", sort=False):
        stored = np.load(dicom / "masks" / f"{uid}.npz")
        where = {image_id: z for z, image_id in enumerate(stored["image_ids"])}
        z = [where[i] for i in rows["image_id"]]
        first = rows.iloc[0]
        box = (first["crop_y0"], first["crop_y1"], first["crop_x0"], first["crop_x1"])
        bits.append((rows.index.to_numpy(), mask_to_input(stored["mask"][z], box,
                                                        (int(first["height"]), int(first["width"])), loaded.size)))
    size = bits[0][1].shape[-1]
    mask_bits = np.zeros((len(chosen), size, size), dtype=np.uint8)
    for rows, values in bits:
        mask_bits[rows] = values
    maps = {m: np.zeros((len(chosen), len(LABELS), size, size), dtype=np.float32) for m in METHOD_TITLES}
    probs = np.zeros((len(chosen), len(LABELS)), dtype=np.float32)
    for rows, hu in iter_hu_batches(cache, chosen, loaded.channel_spec.offsets, 8):
        x = loaded.contract.network_input(hu).float()
        with torch.no_grad():
            probs[rows] = torch.sigmoid(loaded.model.eval()(x)).numpy()
        for method, values in explain_inputs(loaded.model, x).items():
            maps[method][rows] = values
    truth = y_true[positive]
    area = label_masks(mask_bits).mean(axis=(2, 3))  # chance of a uniformly random point, per slice
    header = " | ".join(METHOD_TITLES.values())
    lines = [f"| label | true positives | {header} | random point | all positives | {header} | random point |",
             "|---|---|" + "---|" * (2 * len(METHOD_TITLES) + 3)]
    cells: dict[float, dict[str, list[str]]] = {}
    for threshold in (0.5, 0.0):  # true positives at 0.5, then every labelled-positive slice
        tables = {m: pointing_game_by_label(maps[m], mask_bits, truth, probs, threshold=threshold).set_index("label")
                  for m in METHOD_TITLES}
        cells[threshold] = {}
        for k, label in enumerate(LABELS):
            selected = (truth[:, k] == 1) & (probs[:, k] >= threshold)
            rates = [tables[m].loc[label, "hit_rate"] for m in METHOD_TITLES]
            chance = float(area[selected, k].mean()) if selected.any() else math.nan
            cells[threshold][label] = [str(int(selected.sum())),
                                       *("–" if math.isnan(r) else f"{r:.2f}" for r in rates),
                                       "–" if math.isnan(chance) else f"{chance:.3f}"]
    for label in LABELS:
        lines.append(f"| {label} | " + " | ".join(cells[0.5][label] + cells[0.0][label]) + " |")
    return lines


def main() -> None:
    global BACKBONE, STAGE1
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/ichscan-bench-stage2"))
    parser.add_argument("--train-studies", type=int, default=32)
    parser.add_argument("--holdout-studies", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="phantom and cache matrix")
    parser.add_argument("--input-size", type=int, default=64, help="network input side (resized on the fly)")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--seq-epochs", type=int, default=25)
    parser.add_argument("--simclr-epochs", type=int, default=8)
    parser.add_argument("--finetune-epochs", type=int, default=12)
    parser.add_argument("--pointing-slices", type=int, default=120)
    parser.add_argument("--backbone", default=BACKBONE, help="stage-1, CNN-LSTM and SimCLR backbone")
    args = parser.parse_args()
    BACKBONE = args.backbone
    STAGE1 = f"stage 1: {BACKBONE} (s−1, s, s+1)"
    torch.set_num_threads(2)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    runs = work / "runs"
    commands: list[str] = []
    timings: dict[str, float] = {}
    start_all = time.perf_counter()

    start = time.perf_counter()
    train_cache = phantom(work, "train", args.train_studies, 0, args.size, commands, [])
    hold_cache = phantom(work, "holdout", args.holdout_studies, 1, args.size, commands,
                         ["--positive-fraction", "0.7"])
    timings["phantom: synth + index + prepare"] = time.perf_counter() - start
    hold_slices, y_hold = holdout_labels(hold_cache)
    from ichscan.prepare import read_slices

    train_labels = read_slices(train_cache)[list(LABELS)].to_numpy(dtype=np.float64)
    prior = np.broadcast_to(np.nanmean(train_labels, axis=0), y_hold.shape)
    results: dict[str, dict[str, float]] = {"prior (training label means)": scores(y_hold, prior)}

    # ------------------------------------------------------------------ stage 1 and stage 2
    from ichscan.train import load_model, predict_slices
    from ichscan.train.sequence import (
        SequenceConfig,
        extract_features,
        fit_sequence,
        predict_two_stage,
    )

    start = time.perf_counter()
    stage1 = train_stage1(stage1_config("stage1", train_cache, runs, args.epochs, args.input_size))
    timings["stage 1 training"] = time.perf_counter() - start
    stage1_probs = predict_slices(load_model(stage1), hold_cache, hold_slices)
    results[STAGE1] = scores(y_hold, stage1_probs)

    features = work / "features"
    start = time.perf_counter()
    if not (features / "meta.json").exists():
        extract_features(stage1, train_cache, features, tta=True, progress=False)
    timings["embed (flip TTA)"] = time.perf_counter() - start
    common = {
        "features": str(features),
        "data": {"split": {"method": "patient", "n_folds": 4, "seed": 0}, "fold": 0},
        "loss": {"name": "rsna"},
        "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4},
        "trainer": {"epochs": args.seq_epochs, "batch_size": 4, "num_workers": 0, "accelerator": "cpu",
                    "devices": 1, "progress_bar": False},
        "output_dir": str(runs),
    }
    for name, title in (("lstm", "BiLSTM"), ("gru", "BiGRU"), ("conv", "dilated 1-D conv")):
        config = SequenceConfig.model_validate(
            {**common, "name": f"stage2-{name}", "sequence": {"name": name, "hidden": 64, "layers": 2}})
        start = time.perf_counter()
        if not (config.run_dir() / "oof.parquet").exists():
            fit_sequence(config)
        timings[f"stage 2 {title} training"] = time.perf_counter() - start
        probs = predict_two_stage(config.run_dir(), hold_cache, hold_slices, progress=False)
        results[f"stage 1 + stage 2 {title}"] = scores(y_hold, probs)

    e2e = SequenceConfig.model_validate({
        "kind": "cnn_lstm", "name": "cnn-lstm",
        "data": {"cache_dir": str(train_cache), "size": args.input_size, "windows": ["brain", "subdural", "soft"],
                 "offsets": [-1, 0, 1], "split": {"method": "patient", "n_folds": 4, "seed": 0}, "fold": 0},
        "model": {"backbone": BACKBONE}, "sequence": {"name": "lstm", "hidden": 64, "layers": 2},
        "chunk": 12, "loss": {"name": "rsna"}, "augment": {"hflip": 0.5},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4},
        "trainer": {"epochs": args.epochs, "batch_size": 3, "num_workers": 0, "accelerator": "cpu", "devices": 1,
                    "progress_bar": False},
        "output_dir": str(runs),
    })
    start = time.perf_counter()
    if not (e2e.run_dir() / "oof.parquet").exists():
        fit_sequence(e2e)
    timings["end-to-end CNN-LSTM training"] = time.perf_counter() - start
    results[f"end-to-end CNN-LSTM ({BACKBONE} + BiLSTM, chunks of 12)"] = scores(
        y_hold, predict_two_stage(e2e.run_dir(), hold_cache, hold_slices, progress=False))

    # ------------------------------------------------------------------ SimCLR, 5 % of the labels
    from ichscan.train.pretrain import PretrainConfig, pretrain

    simclr = PretrainConfig.model_validate({
        "name": "simclr",
        "data": {"cache_dir": str(train_cache), "size": args.input_size, "windows": ["brain", "subdural", "soft"],
                 "offsets": [-1, 0, 1]},
        "model": {"backbone": BACKBONE}, "temperature": 0.2,
        "trainer": {"epochs": args.simclr_epochs, "batch_size": 64, "num_workers": 0, "accelerator": "cpu",
                    "devices": 1, "progress_bar": False},
        "output_dir": str(runs),
    })
    start = time.perf_counter()
    if not (simclr.run_dir() / "backbone.pt").exists():
        pretrain(simclr)
    timings["SimCLR pre-training"] = time.perf_counter() - start
    small: dict[str, dict[str, float]] = {}
    for name, weights in (("scratch", None), ("simclr", str(simclr.run_dir() / "backbone.pt"))):
        config = stage1_config(f"small-{name}", train_cache, runs, args.finetune_epochs, args.input_size,
                               data__subset_fraction=0.05, model__weights_path=weights,
                               trainer__batch_size=16)
        start = time.perf_counter()
        run_dir = train_stage1(config)
        timings[f"5 % labels fine-tuning from {name}"] = time.perf_counter() - start
        small[name] = scores(y_hold, predict_slices(load_model(run_dir), hold_cache, hold_slices))
    n_small = len(pd.read_parquet(runs / "small-scratch" / "fold0" / "oof.parquet")) * 4

    # ------------------------------------------------------------------ pointing game
    start = time.perf_counter()
    pointing = pointing_section(stage1, hold_cache, work / "holdout-dicom", args.pointing_slices)
    timings["pointing game"] = time.perf_counter() - start
    speed = speed_section()
    total = time.perf_counter() - start_all

    n_train, n_hold = len(train_labels), len(hold_slices)
    out = [
        "## Stage 2, SimCLR and explanations on the phantom",
        "",
        f"Command: `.venv/bin/python bench/bench_stage2.py {shlex.join(sys.argv[1:])}` (settings: {args.train_studies} training "
        f"studies, {args.holdout_studies} held-out studies, {args.size} px phantom and cache, network input "
        f"{args.input_size} px, stage-1 {args.epochs} epochs, stage-2 "
        f"{args.seq_epochs} epochs, SimCLR {args.simclr_epochs} epochs, fine-tuning {args.finetune_epochs} epochs).",
        f"Machine: {torch.get_num_threads()} cores {platform.machine()} (shared), CPU only, torch {torch.__version__}; "
        f"whole run {total / 60:.1f} min (reusing finished steps of --work where present).",
        "",
        "Data, made by:",
        "",
        *[f"    {c}" for c in commands],
        "",
        f"Training phantom: {n_train} slices; held-out phantom (other seed, never trained on): {n_hold} slices, "
        f"{int(np.nansum(y_hold[:, 0]))} with ICH. Every number below is on the held-out slices. Stage-1 model: "
        f"{BACKBONE} from scratch, slices s−1, s, s+1 × brain/subdural/soft windows, RSNA-weighted BCE, patient split "
        "(4 folds, fold 0 validates). Stage 2 trains on the flip-TTA embeddings of the training phantom with the "
        "same split (so its validation fold was never seen by stage 1).",
        "",
        "### Weighted log loss and AUC, with and without stage 2",
        "",
        "| model | weighted log loss | ratio to stage 1 | AUC any | mean AUC (defined labels) |",
        "|---|---|---|---|---|",
    ]
    base = results[STAGE1]["wll"]
    for name, value in results.items():
        out.append(f"| {name} | {value['wll']:.4f} | {value['wll'] / base:.2f} | {value['auc_any']:.3f} | "
                   f"{value['auc_mean']:.3f} |")
    out += [
        "",
        f"### SimCLR vs scratch with 5 % of the labels (≈{n_small} labelled slices, seed 002's small-label setting)",
        "",
        "| initialisation | weighted log loss | ratio to scratch | AUC any | mean AUC |",
        "|---|---|---|---|---|",
    ]
    for name, value in small.items():
        out.append(f"| {'SimCLR backbone' if name == 'simclr' else 'random (scratch)'} | {value['wll']:.4f} | "
                   f"{value['wll'] / small['scratch']['wll']:.2f} | {value['auc_any']:.3f} | {value['auc_mean']:.3f} |")
    out += [
        "",
        f"### Pointing game (stage-1 model, first {args.pointing_slices} held-out ICH slices)",
        "",
        "Share of slices whose heatmap maximum (the map of that label) lies inside that label's phantom mask "
        "(`any`: the union of all lesions), over the true positives at 0.5 and over every slice labelled "
        "positive. Naive baseline: a uniformly random point, whose expected hit rate is the mask's share of "
        "the image.",
        "",
        *pointing,
        "",
        "### Speed of the vectorised pieces (same run)",
        "",
        *speed,
        "",
        "### Wall time of the steps (s)",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in timings.items()],
    ]
    print("\n".join(out))
    (work / "results.json").write_text(json.dumps({"results": results, "small": small}, indent=2))


if __name__ == "__main__":
    main()
