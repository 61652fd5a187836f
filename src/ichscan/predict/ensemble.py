"""Ensembles of trained runs: load them, run each on its own windows and size, combine sigmoids.

Seed 000's "dual path" averages the sigmoid outputs of two backbones; a weighted mean generalises
it: ``p = Σ_m w_m · σ(f_m(x)) / Σ_m w_m``. Flip test-time augmentation averages each model's
sigmoid over the image and its horizontal mirror: ``σ_m = ½ (σ(f_m(x)) + σ(f_m(flip_W x)))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from ichscan.data.contract import InputContract
from ichscan.data.windows import ChannelSpec
from ichscan.labels import N_LABELS

Precision = Literal["auto", "fp32", "bf16"]


@dataclass(frozen=True)
class EnsembleMember:
    """One model of an ensemble with the input contract it was trained under."""

    name: str
    model: nn.Module
    contract: InputContract

    @property
    def channel_spec(self) -> ChannelSpec:
        """Windows × slice offsets and normalisation."""
        return self.contract.channel_spec

    @property
    def size(self) -> int:
        """The network's square input side in pixels."""
        return self.contract.input_size


def load_members(run_dirs: Sequence[Path], checkpoint: str = "best") -> list[EnsembleMember]:
    """Load every training run with `ichscan.train.load_model` (eval mode, CPU) with its contract."""
    from ichscan.train import load_model

    members = []
    for run_dir in run_dirs:
        loaded = load_model(Path(run_dir), checkpoint=checkpoint)
        folder = Path(run_dir).name
        members.append(
            EnsembleMember(
                name=f"{loaded.config.name}/{folder}" if folder.startswith("fold") else folder,
                model=loaded.model.eval(),
                contract=loaded.contract,
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
    hu: np.ndarray,
    offsets: Sequence[int],
    *,
    tta: bool = False,
    autocast_dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Sigmoid probabilities (B, 6) float32 of one member on a batch of HU stacks.

    `hu` is int16 (B, len(offsets), H, W) on the cache grid, `offsets` the slice offsets of its
    second axis. The member's own offsets are picked out and turned into its input by its contract
    (`InputContract.network_input`: the one resize on the CPU, then the windows on `device`), as in
    training, and passed through the model.
    """
    positions = [list(offsets).index(int(o)) for o in member.channel_spec.offsets]
    x = member.contract.network_input(hu[:, positions], device)
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
