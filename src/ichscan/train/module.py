"""The Lightning module: HU batches in, windowing + augmentation on the device, six logits out.

Workers move int16 HU stacks already on the network grid (``SliceDataset(size=…)`` applies the
input contract's one resize, `ichscan.data.contract.to_input_grid`, on the CPU); everything float
happens on whole batches where the model runs: ``apply_windows``, the kornia augmentation
(training only), channels_last. The run's `InputContract` is stored in every checkpoint. Validation gathers the sigmoid outputs of the whole
epoch (all DDP ranks) and scores them with ``ichscan.metrics``: the RSNA weighted log loss
``val_wll`` (the checkpoint / early-stopping criterion) and per-class ROC AUC.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import nn

from ichscan.config import ExperimentConfig, config_from_dict
from ichscan.data.augment import create_augmentation
from ichscan.data.contract import InputContract
from ichscan.data.windows import ChannelSpec, apply_windows
from ichscan.labels import LABELS
from ichscan.models import create_model
from ichscan.train.losses import create_loss
from ichscan.train.optim import create_optimizer, create_scheduler

log = logging.getLogger(__name__)

MONITOR = "val_wll"
CHECKPOINT_KEY = "ichscan"


def channel_spec(config: ExperimentConfig) -> ChannelSpec:
    """The ``ChannelSpec`` (windows × slice offsets, normalisation) a config trains with."""
    return ChannelSpec(
        windows=config.data.windows, offsets=config.data.offsets, normalize=config.data.normalize
    )


def build_model(config: ExperimentConfig, pretrained: bool | None = None) -> nn.Module:
    """The timm network of ``config.model`` with one input channel per (offset, window)."""
    model_cfg = config.model
    return create_model(
        model_cfg.backbone,
        in_chans=config.data.in_chans,
        num_classes=len(LABELS),
        pretrained=model_cfg.pretrained if pretrained is None else pretrained,
        weights_path=model_cfg.weights_path if pretrained is None else None,
        drop_rate=model_cfg.drop_rate,
        **({"global_pool": model_cfg.global_pool} if model_cfg.global_pool else {}),
    )


def label_mask(labels: Sequence[str]) -> torch.Tensor:
    """Bool ``(6,)``: which of ``LABELS`` enter the loss."""
    return torch.tensor([label in labels for label in LABELS], dtype=torch.bool)


class SliceClassifier(pl.LightningModule):
    """Per-slice six-label classifier of one ``ExperimentConfig``.

    ``loss_params`` are extra keyword arguments for ``create_loss`` that depend on the training
    data (e.g. per-class positive/negative counts for seed 000's weighted BCE). ``contract``: the
    run's input recipe, written into every checkpoint (``ichscan.input``).
    """

    def __init__(
        self,
        config: ExperimentConfig,
        loss_params: dict[str, Any] | None = None,
        contract: InputContract | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.contract = contract
        self.channel_spec = channel_spec(config)
        self.model = build_model(config)
        if config.trainer.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.augment = create_augmentation(config.augment)
        self.criterion = create_loss(config.loss.name, **{**config.loss.params, **(loss_params or {})})
        self.register_buffer("loss_mask", label_mask(config.data.labels), persistent=False)
        self.optimizer_switched = False
        # Kept out of the module tree (object.__setattr__) so state_dict holds the weights once.
        object.__setattr__(self, "_compiled", torch.compile(self.model) if config.trainer.compile else None)
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    # ---------------------------------------------------------------- forward path
    def inputs(self, hu: torch.Tensor, train: bool) -> torch.Tensor:
        """int16 HU ``(B, S, size, size)`` (already on the network grid) → network input ``(B, S·W, size, size)``."""
        x = apply_windows(hu, self.channel_spec)
        if train:
            x = self.augment(x)
        if self.config.trainer.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, 6)`` of windowed inputs."""
        return self._compiled(x) if self._compiled is not None else self.model(x)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss on the configured labels only: the others become NaN, which the losses mask out."""
        if not bool(self.loss_mask.all()):
            labels = torch.where(self.loss_mask, labels, torch.full_like(labels, math.nan))
        return self.criterion(logits.float(), labels)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(self.inputs(batch["hu"], train=True))
        loss = self._loss(logits, batch["labels"])
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=len(logits), sync_dist=True)
        return loss

    # ---------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(self.inputs(batch["hu"], train=False)).float()
        loss = self._loss(logits, batch["labels"])
        self.log("val_loss", loss, on_epoch=True, batch_size=len(logits), sync_dist=True)
        index = torch.as_tensor(batch["index"], device=logits.device)
        self._val_outputs.append((index, torch.sigmoid(logits), batch["labels"]))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        index = torch.cat([out[0] for out in self._val_outputs])
        probs = torch.cat([out[1] for out in self._val_outputs])
        labels = torch.cat([out[2] for out in self._val_outputs])
        self._val_outputs = []
        if self.trainer.world_size > 1:  # DistributedSampler pads: gather, then keep each row once
            index = self.all_gather(index).reshape(-1)
            probs = self.all_gather(probs).reshape(-1, len(LABELS))
            labels = self.all_gather(labels).reshape(-1, len(LABELS))
        unique, first = np.unique(index.cpu().numpy(), return_index=True)
        metrics = validation_metrics(labels.cpu().numpy()[first], probs.cpu().numpy()[first])
        # Every rank holds the same gathered metrics, so no further reduction is needed.
        self.log(MONITOR, metrics.pop(MONITOR), prog_bar=True)
        self.log_dict(metrics)

    # ---------------------------------------------------------------- optimisation
    def _optimizer(self, switched: bool) -> torch.optim.Optimizer:
        cfg = self.config.optimizer
        name = cfg.switch_to if switched and cfg.switch_to else cfg.name
        lr = (cfg.switch_lr or cfg.lr) if switched else cfg.lr
        return create_optimizer(
            name, self.model, lr=lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum,
            betas=cfg.betas,
        )

    def _scheduler(self, optimizer: torch.optim.Optimizer) -> Any:
        cfg = self.config.scheduler
        if cfg.name == "none":
            return None
        return create_scheduler(cfg.name, optimizer, **cfg.params)

    def configure_optimizers(self) -> Any:
        optimizer = self._optimizer(self.optimizer_switched)
        scheduler = self._scheduler(optimizer)
        if scheduler is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": MONITOR, "interval": self.config.scheduler.interval},
        }

    def on_train_epoch_start(self) -> None:
        """Seed 001: after ``switch_after`` epochs replace the optimiser (e.g. SGD → RMSprop)."""
        cfg = self.config.optimizer
        if cfg.switch_after is None or self.optimizer_switched or self.current_epoch < cfg.switch_after:
            return
        optimizer = self._optimizer(switched=True)
        self.trainer.strategy.optimizers = [optimizer]
        for scheduler_config in self.trainer.lr_scheduler_configs:
            scheduler_config.scheduler = self._scheduler(optimizer)
        self.optimizer_switched = True
        log.info("epoch %d: optimiser switched from %s to %s", self.current_epoch, cfg.name, cfg.switch_to)

    # ---------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "config": self.config.model_dump(mode="json"),
            "optimizer_switched": self.optimizer_switched,
            **({"input": self.contract.to_json()} if self.contract is not None else {}),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Runs before configure_optimizers on resume, so the saved optimiser state meets its own kind.
        self.optimizer_switched = bool(checkpoint.get(CHECKPOINT_KEY, {}).get("optimizer_switched", False))


def validation_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """``val_wll`` (RSNA weighted log loss), ``val_auc_<label>`` and ``val_auc_mean`` (over defined AUCs)."""
    from ichscan.metrics import roc_auc, weighted_log_loss

    metrics = {MONITOR: float(weighted_log_loss(y_true, y_prob))}
    aucs = roc_auc(y_true, y_prob)
    for key in (*LABELS, "mean"):
        metrics[f"val_auc_{key}"] = float(aucs.get(key, math.nan))
    return metrics


def config_of_checkpoint(checkpoint: dict[str, Any], source: str) -> ExperimentConfig:
    """The experiment config stored in a checkpoint by ``SliceClassifier.on_save_checkpoint``."""
    stored = checkpoint.get(CHECKPOINT_KEY, {}).get("config")
    if stored is None:
        raise ValueError(f"{source}: not an ichscan checkpoint (no stored config)")
    return config_from_dict(stored, source)


def model_state(checkpoint: dict[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    """The backbone's ``state_dict`` items of a Lightning checkpoint (prefix ``model.`` removed)."""
    for key, value in checkpoint["state_dict"].items():
        if key.startswith("model."):
            yield key[len("model."):], value
