"""Optimisers and learning-rate schedules by name, and seed 001's optimiser switch.

`create_optimizer(name, params, lr, ...)` wraps the torch.optim classes with one set of argument
names; each optimiser uses the arguments that apply to it (``momentum`` for SGD/RMSprop, ``betas``
for the Adam family) and ignores the others, so one config section serves all of them.
`create_scheduler(name, optimizer, ...)` builds the schedules of the seeds. `OptimizerSwitch`
rebuilds the optimiser at a given epoch (SGD 0.1 → RMSprop, seed 001).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from timm.optim import param_groups_weight_decay
from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer, RAdam, RMSprop
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau, StepLR

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "OptimizerSwitch",
    "Params",
    "Scheduler",
    "WarmupCosine",
    "create_optimizer",
    "create_scheduler",
]

Params = nn.Module | Iterable[torch.Tensor] | Iterable[dict[str, Any]]
Scheduler = LRScheduler | ReduceLROnPlateau


def _adam(params: Any, lr: float, weight_decay: float, momentum: float, betas: tuple[float, float],
          **kwargs: Any) -> Optimizer:
    return Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, **kwargs)


def _adamw(params: Any, lr: float, weight_decay: float, momentum: float, betas: tuple[float, float],
           **kwargs: Any) -> Optimizer:
    return AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, **kwargs)


def _radam(params: Any, lr: float, weight_decay: float, momentum: float, betas: tuple[float, float],
           **kwargs: Any) -> Optimizer:
    return RAdam(params, lr=lr, betas=betas, weight_decay=weight_decay, **kwargs)


def _sgd(params: Any, lr: float, weight_decay: float, momentum: float, betas: tuple[float, float],
         nesterov: bool = False, **kwargs: Any) -> Optimizer:
    return SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov, **kwargs)


def _rmsprop(params: Any, lr: float, weight_decay: float, momentum: float, betas: tuple[float, float],
             **kwargs: Any) -> Optimizer:
    return RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)


OPTIMIZERS: Final[Mapping[str, Callable[..., Optimizer]]] = {
    "adam": _adam,
    "adamw": _adamw,
    "radam": _radam,
    "sgd": _sgd,
    "rmsprop": _rmsprop,
}
_TORCH_CLASSES: Final[Mapping[str, type[Optimizer]]] = {
    "adam": Adam, "adamw": AdamW, "radam": RAdam, "sgd": SGD, "rmsprop": RMSprop,
}


def create_optimizer(
    name: str,
    params: Params,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    **kwargs: Any,
) -> Optimizer:
    """The torch optimiser `name` (adam, adamw, radam, sgd, rmsprop) over `params`.

    `momentum` is used by ``sgd`` (``nesterov=True`` for Nesterov momentum) and ``rmsprop``;
    `betas` by ``adam``/``adamw``/``radam``. Other keywords go to the torch class (``eps``,
    ``alpha``, ``centered``…). When `params` is an ``nn.Module`` and ``weight_decay > 0``, biases and
    normalisation weights are exempt from weight decay (timm's ``param_groups_weight_decay``).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    if lr <= 0 or weight_decay < 0 or not 0.0 <= momentum < 1.0:
        raise ValueError(
            f"optimizer {name!r}: need lr > 0, weight_decay >= 0 and 0 <= momentum < 1, "
            f"got lr={lr}, weight_decay={weight_decay}, momentum={momentum}"
        )
    accepted = set(inspect.signature(_TORCH_CLASSES[name]).parameters) - {"params", "lr", "weight_decay"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"optimizer {name!r} has no argument(s) {unknown}; it takes {sorted(accepted)}")
    if isinstance(params, nn.Module):
        groups: Any = param_groups_weight_decay(params, weight_decay) if weight_decay > 0 else params.parameters()
    else:
        groups = params
    return OPTIMIZERS[name](groups, lr=lr, weight_decay=weight_decay, momentum=momentum, betas=tuple(betas),
                            **kwargs)


@dataclass(frozen=True)
class OptimizerSwitch:
    """Seed 001: train with one optimiser, then from epoch `after_epochs` (0-based) on with `to`.

    Call ``optimizer = switch.maybe_switch(epoch, optimizer)`` at the start of every training
    epoch (Lightning: ``on_train_epoch_start``, then put the result in
    ``trainer.strategy.optimizers`` and rebuild the schedulers on it). Before the switch epoch it
    returns `optimizer` itself; from then on a fresh `to` optimiser over the same parameter groups
    (each group's weight decay kept) with learning rate `lr` (default: the old group's initial
    rate), momentum, betas and `kwargs`. It returns an optimiser that is already of kind `to` as it
    is, so calling it every epoch, or after resuming a switched run, is safe.
    """

    to: str
    after_epochs: int
    lr: float | None = None
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.to not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.to!r} to switch to; known: {', '.join(OPTIMIZERS)}")
        if self.after_epochs < 0:
            raise ValueError(f"after_epochs must be >= 0, got {self.after_epochs}")

    def due(self, epoch: int) -> bool:
        """Whether epoch `epoch` (0-based) trains with the second optimiser."""
        return epoch >= self.after_epochs

    def maybe_switch(self, epoch: int, optimizer: Optimizer) -> Optimizer:
        """`optimizer` before the switch epoch or when it already is a `to`; else the new optimiser."""
        if not self.due(epoch) or isinstance(optimizer, _TORCH_CLASSES[self.to]):
            return optimizer
        groups = [
            {
                "params": group["params"],
                "weight_decay": group.get("weight_decay", 0.0),
                "lr": self.lr if self.lr is not None else group.get("initial_lr", group["lr"]),
            }
            for group in optimizer.param_groups
        ]
        first = groups[0]
        return create_optimizer(self.to, groups, lr=first["lr"], weight_decay=first["weight_decay"],
                                momentum=self.momentum, betas=self.betas, **dict(self.kwargs))


@dataclass(frozen=True)
class WarmupCosine:
    """Learning-rate factor f(t) of a linear warm-up followed by a cosine decay (for ``LambdaLR``).

    With W = `warmup`, T = `total`, s = `start_factor`, r = `min_factor`:

        f(t) = s + (1 − s) · t / W                                   for t < W,
        f(t) = r + (1 − r) · ½ (1 + cos(π · min(t − W, T − W) / (T − W)))   for t ≥ W,

    so the rate rises from s·lr to lr over W steps, then falls to r·lr at t = T and stays there.
    A "step" is one scheduler step: an epoch or a batch, as the caller steps it.
    """

    total: int
    warmup: int = 0
    start_factor: float = 0.1
    min_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.total <= self.warmup:
            raise ValueError(f"cosine schedule needs 0 <= warmup < total, got warmup={self.warmup}, "
                             f"total={self.total}")
        if not 0.0 <= self.start_factor <= 1.0 or not 0.0 <= self.min_factor <= 1.0:
            raise ValueError("start_factor and min_factor must be in [0, 1]")

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start_factor + (1.0 - self.start_factor) * step / self.warmup
        span = self.total - self.warmup
        progress = min(step - self.warmup, span) / span
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _step(optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> Scheduler:
    return StepLR(optimizer, step_size=step_size, gamma=gamma)


def _plateau(optimizer: Optimizer, factor: float = 0.1, patience: int = 10, min_lr: float = 0.0,
             threshold: float = 1e-4, cooldown: int = 0, mode: str = "min") -> Scheduler:
    return ReduceLROnPlateau(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr,
                             threshold=threshold, cooldown=cooldown)


def _cosine(optimizer: Optimizer, total: int, warmup: int = 0, start_factor: float = 0.1,
            min_factor: float = 0.0) -> Scheduler:
    return LambdaLR(optimizer, WarmupCosine(total=total, warmup=warmup, start_factor=start_factor,
                                            min_factor=min_factor))


SCHEDULERS: Final[Mapping[str, Callable[..., Scheduler]]] = {
    "step": _step,
    "plateau": _plateau,
    "cosine": _cosine,
}


def create_scheduler(name: str, optimizer: Optimizer, **kwargs: Any) -> Scheduler | None:
    """The learning-rate schedule `name` on `optimizer`; None for ``"none"`` (constant rate).

    * ``step``: lr · gamma^⌊epoch / step_size⌋ (seed 000: ``step_size=50, gamma=0.412``);
    * ``plateau``: ReduceLROnPlateau on a minimised monitor (validation loss): lr · factor after
      `patience` epochs without improvement (seed 001); step it with the monitored value;
    * ``cosine``: `WarmupCosine` (``total``, ``warmup``, ``start_factor``, ``min_factor``) through
      ``LambdaLR``; counts scheduler steps, i.e. epochs or batches depending on how it is stepped.
    """
    if name == "none":
        if kwargs:
            raise ValueError(f"scheduler 'none' takes no arguments, got {sorted(kwargs)}")
        return None
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; known: none, {', '.join(SCHEDULERS)}")
    factory = SCHEDULERS[name]
    accepted = set(inspect.signature(factory).parameters) - {"optimizer"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"scheduler {name!r} has no argument(s) {unknown}; it takes {sorted(accepted)}")
    try:
        return factory(optimizer, **kwargs)
    except TypeError as exc:  # a required argument is missing
        raise ValueError(f"scheduler {name!r}: {exc}") from exc


def lightning_optimizers(parameters: Any, optimizer: Any, scheduler: Any, monitor: str) -> Any:
    """What a LightningModule's ``configure_optimizers`` returns, from the config's
    ``optimizer`` and ``scheduler`` sections (``ichscan.config.OptimizerConfig`` / ``SchedulerConfig``).

    ``monitor`` names the logged value ReduceLROnPlateau watches; the scheduler steps per
    ``scheduler.interval`` ("epoch" or "step").
    """
    built = create_optimizer(optimizer.name, parameters, lr=optimizer.lr, weight_decay=optimizer.weight_decay,
                             momentum=optimizer.momentum, betas=optimizer.betas)
    if scheduler.name == "none":
        return built
    return {
        "optimizer": built,
        "lr_scheduler": {
            "scheduler": create_scheduler(scheduler.name, built, **scheduler.params),
            "monitor": monitor,
            "interval": scheduler.interval,
        },
    }
