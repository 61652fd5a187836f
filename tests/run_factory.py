"""Fakes for the predict tests: a tiny HU cache in the ARCHITECTURE.md layout and small models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import timm
import torch

from ichscan.data.contract import InputContract, SplitRecipe, write_contract
from ichscan.predict import EnsembleMember

CACHE_SIZE = 32


def write_cache(cache_dir: Path, volumes: dict[str, np.ndarray], study_of: dict[str, str]) -> pd.DataFrame:
    """Write `volumes` (series uid → int16 (z, H, W)) as a cache; return its slices table."""
    (cache_dir / "series").mkdir(parents=True)
    rows = []
    for series_uid, volume in volumes.items():
        np.save(cache_dir / "series" / f"{series_uid}.npy", volume.astype(np.int16))
        z, height, width = volume.shape
        for index in range(z):
            rows.append(
                {
                    "image_id": f"ID_{series_uid[-3:]}{index:03d}",
                    "sop_instance_uid": f"{series_uid}.{index}",
                    "patient_id": f"P-{study_of[series_uid]}",
                    "study_instance_uid": study_of[series_uid],
                    "series_instance_uid": series_uid,
                    "position": float(index * 5),
                    "slice_index": index,
                    "n_slices": z,
                    "height": height,
                    "width": width,
                }
            )
    slices = pd.DataFrame(rows).astype({"slice_index": "int32", "n_slices": "int32"})
    slices.to_parquet(cache_dir / "slices.parquet", index=False)
    (cache_dir / "meta.json").write_text(json.dumps({"size": height, "crop": True, "version": 1}))
    return slices


def make_member(
    seed: int,
    *,
    windows: tuple[str, ...] = ("brain", "subdural", "soft"),
    offsets: tuple[int, ...] = (0,),
    size: int = CACHE_SIZE,
    name: str | None = None,
) -> EnsembleMember:
    """A timm resnet18 with random weights (seeded), in eval mode, as an ensemble member trained
    (by its contract) on a `CACHE_SIZE` cache with input side `size`."""
    torch.manual_seed(seed)
    contract = InputContract.build(cache_size=CACHE_SIZE, crop=True, windows=windows, offsets=offsets,
                                   input_size=size)
    model = timm.create_model("resnet18", pretrained=False, num_classes=6, in_chans=contract.in_chans)
    return EnsembleMember(name or f"model{seed}", model.eval(), contract)


def make_run_dir(
    root: Path,
    name: str = "demo",
    *,
    backbone: str = "resnet18",
    size: int = CACHE_SIZE,
    windows: tuple[str, ...] = ("brain", "subdural", "soft"),
    offsets: tuple[int, ...] = (0,),
    seed: int = 0,
    val_wll: tuple[float, ...] = (0.30, 0.21, 0.25),
    checkpoint: bool = True,
    fold: int = 0,
    contract: bool = True,
    cache_size: int = CACHE_SIZE,
) -> Path:
    """A finished run directory as `ichscan train` leaves it (docs/ARCHITECTURE.md), random weights.

    config.yaml, checkpoints/best.ckpt (Lightning-style: the config under "ichscan" and the
    network's weights under "state_dict" with the "model." prefix), metrics.csv (one row per
    epoch), oof.parquet (image_id, fold, six probabilities, six `label_<label>` columns) and, with
    `contract`, input.json (trained on a `cache_size` cache with crop, input side `size`).
    """
    from ichscan.config import ExperimentConfig, dump_config
    from ichscan.labels import LABELS
    from ichscan.train.module import build_model

    config = ExperimentConfig.model_validate(
        {
            "name": name,
            "data": {
                "cache_dir": str(root / "train-cache"),
                "size": size,
                "windows": list(windows),
                "offsets": list(offsets),
            },
            "model": {"backbone": backbone},
            "output_dir": str(root / "runs"),
        }
    )
    run_dir = config.run_dir(fold)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(config))
    if contract:
        split = config.data.split
        write_contract(run_dir, InputContract.build(
            cache_size=cache_size, crop=True, windows=windows, offsets=offsets, input_size=size,
            split=SplitRecipe(method=split.method, n_folds=split.n_folds, seed=split.seed, fold=fold)))
    if checkpoint:
        torch.manual_seed(seed)
        model = build_model(config, pretrained=False)
        state = {f"model.{key}": value for key, value in model.state_dict().items()}
        torch.save(
            {"ichscan": {"config": config.model_dump(mode="json")}, "state_dict": state},
            run_dir / "checkpoints" / "best.ckpt",
        )
    pd.DataFrame(
        {"epoch": np.arange(len(val_wll)), "epoch_time_s": 1.5 + np.arange(len(val_wll)), "val_wll": val_wll}
    ).to_csv(run_dir / "metrics.csv", index=False)
    rng = np.random.default_rng(seed)
    subtypes = rng.random((40, 5)) < 0.3
    labels = np.column_stack([subtypes.any(axis=1), subtypes]).astype(np.float32)
    probs = np.clip(0.5 * labels + 0.5 * rng.random(labels.shape), 0, 1).astype(np.float32)
    oof = pd.DataFrame({"image_id": [f"ID_{i:04x}" for i in range(40)], "fold": np.zeros(40, np.int32)})
    for k, label in enumerate(LABELS):
        oof[label] = probs[:, k]
    for k, label in enumerate(LABELS):
        oof[f"label_{label}"] = labels[:, k]
    oof.to_parquet(run_dir / "oof.parquet", index=False)
    return run_dir
