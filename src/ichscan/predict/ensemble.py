"""Ensembles of trained runs: load them, run each on its own windows and size, combine sigmoids.

Seed 000's "dual path" averages the sigmoid outputs of two backbones; a weighted mean generalises
it: ``p = Σ_m w_m · σ(f_m(x)) / Σ_m w_m``. Flip test-time augmentation averages each model's
sigmoid over the image and its horizontal mirror: ``σ_m = ½ (σ(f_m(x)) + σ(f_m(flip_W x)))``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import nn

from ichscan.data.windows import ChannelSpec, apply_windows
from ichscan.labels import N_LABELS

if TYPE_CHECKING:
    from ichscan.config import ExperimentConfig

Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class EnsembleMember:
    """One model of an ensemble with what it needs to see its input as in training.

    `channel_spec`: windows × slice offsets and normalisation; `size`: the square input side in
    pixels the run was trained at (0: the cache's own size).
    """

    name: str
    model: nn.Module
    channel_spec: ChannelSpec
    size: int


def training_cache_size(config: ExperimentConfig) -> int:
    """Side of the cache a run trained on (its `meta.json`), 0 when that cache is not readable."""
    meta = Path(config.data.cache_dir) / "meta.json"
    try:
        return int(json.loads(meta.read_text()).get("size", 0))
    except (OSError, ValueError, TypeError):
        return 0


def expand_runs(
    run_dirs: Sequence[Path], weights: Sequence[float] | None = None
) -> tuple[list[Path], list[float] | None]:
    """Run directories to load, and their weights.

    A directory holding `config.yaml` is one run; a directory whose `fold*/` subfolders are runs
    (`ichscan train` writes `output_dir/name/fold<k>`) stands for all its folds, which share its
    weight equally (a k-fold ensemble). Raises ValueError naming a directory that is neither.
    """
    if weights is not None and len(weights) != len(run_dirs):
        raise ValueError(f"{len(weights)} weights given for {len(run_dirs)} models")
    expanded: list[Path] = []
    expanded_weights: list[float] = []
    for k, run_dir in enumerate(map(Path, run_dirs)):
        if (run_dir / "config.yaml").is_file():
            folds = [run_dir]
        else:
            folds = sorted(p for p in run_dir.glob("fold*") if (p / "config.yaml").is_file())
        if not folds:
            raise ValueError(f"{run_dir}: not a training run (no config.yaml, no fold*/config.yaml)")
        expanded += folds
        if weights is not None:
            expanded_weights += [float(weights[k]) / len(folds)] * len(folds)
    return expanded, (expanded_weights if weights is not None else None)


def load_members(run_dirs: Sequence[Path], checkpoint: str = "best") -> list[EnsembleMember]:
    """Load every training run with `ichscan.train.load_model` (eval mode, CPU).

    A run trained at the cache's own size (`data.size` unset) gets the size of the cache it trained
    on, so a new input is prepared and seen at the same resolution.
    """
    from ichscan.train import load_model

    members = []
    for run_dir in run_dirs:
        loaded = load_model(Path(run_dir), checkpoint=checkpoint)
        folder = Path(run_dir).name
        members.append(
            EnsembleMember(
                name=f"{loaded.config.name}/{folder}" if folder.startswith("fold") else folder,
                model=loaded.model.eval(),
                channel_spec=loaded.channel_spec,
                size=int(loaded.size or training_cache_size(loaded.config)),
            )
        )
    return members


def normalize_weights(weights: Sequence[float] | None, n_members: int) -> np.ndarray:
    """Ensemble weights as a float64 vector summing to 1 (equal weights when `weights` is None).

    Raises ValueError when the count differs from the number of models, a weight is negative or
    not finite, or all weights are zero.
    """
    if n_members < 1:
        raise ValueError("an ensemble needs at least one model")
    if weights is None:
        return np.full(n_members, 1.0 / n_members)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_members,):
        raise ValueError(f"{w.size} weights given for {n_members} models")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative, got {list(w)}")
    if w.sum() <= 0:
        raise ValueError("weights sum to zero")
    return w / w.sum()


def combine_probabilities(member_probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over models: `member_probs` (m, n, 6), `weights` (m,) summing to 1 → (n, 6)."""
    return np.tensordot(weights, member_probs, axes=(0, 0)).astype(np.float32)


def union_offsets(members: Sequence[EnsembleMember]) -> tuple[int, ...]:
    """All slice offsets any member needs, sorted, so each neighbour is read from the cache once."""
    return tuple(sorted({int(o) for m in members for o in m.channel_spec.offsets}))


def resolve_precision(precision: Precision, device: torch.device) -> torch.dtype | None:
    """The autocast dtype to use: bf16 where the CPU computes it natively, else None (fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cpu":
        supported = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        return torch.bfloat16 if supported else None
    return torch.bfloat16 if device.type == "cuda" else None


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Eval mode, on `device`, channels_last memory format (1.3–2× faster convolutions on CPU)."""
    return model.eval().to(device=device, memory_format=torch.channels_last)


def member_probabilities(
    member: EnsembleMember,
    hu: torch.Tensor,
    offsets: Sequence[int],
    *,
    tta: bool = False,
    autocast_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Sigmoid probabilities (B, 6) float32 of one member on a batch of HU stacks.

    `hu` is int16 (B, len(offsets), H, W) on the model's device, `offsets` the slice offsets of its
    second axis. The member's own offsets are picked out, resized to its size when that differs
    (`ichscan.train.resize_hu`: bilinear, antialiased, in HU, as in training), windowed with its
    channel spec, and passed through the model.
    """
    from ichscan.train import resize_hu  # imported here: ichscan.train pulls in Lightning

    positions = [list(offsets).index(int(o)) for o in member.channel_spec.offsets]
    stack = resize_hu(hu[:, positions], member.size or None)
    x = apply_windows(stack, member.channel_spec)
    x = x.contiguous(memory_format=torch.channels_last)
    views = [x, torch.flip(x, dims=(-1,))] if tta else [x]
    total = torch.zeros(x.shape[0], N_LABELS, dtype=torch.float32, device=x.device)
    for view in views:
        autocast = (
            torch.autocast(device_type=x.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else nullcontext()
        )
        with autocast:
            logits = member.model(view)
        total += torch.sigmoid(logits.float())
    return total / len(views)
