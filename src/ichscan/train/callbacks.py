"""Lightning plug-ins of a training run: atomic checkpoints and the per-epoch ``metrics.csv``."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.cloud_io import get_filesystem

from ichscan.files import atomic_path

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary sibling, renamed onto the target: a crash never leaves a torn
    ``best.ckpt``/``last.ckpt`` for ``--resume`` or ``ichscan predict`` to choke on."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        if get_filesystem(path).protocol not in ("file", ("file", "local")):
            super().save_checkpoint(checkpoint, path)
            return
        with atomic_path(Path(path)) as tmp:
            torch.save(checkpoint, tmp)


class EpochMetricsCSV(pl.Callback):
    """One row per epoch in ``metrics.csv``: epoch, step, learning rate, time, train and validation
    metrics. Rewritten atomically after every epoch; on resume the earlier rows are kept."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._epoch_start = 0.0
        self._train_images = 0
        self._lr = math.nan
        self._optimizer = ""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.path.exists():  # resumed run: keep what the finished epochs wrote
            previous = pd.read_csv(self.path)
            self.rows = previous.loc[previous["epoch"] < trainer.current_epoch].to_dict("records")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.perf_counter()
        self._train_images = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if batch_idx == 0:  # the rate and optimiser this epoch trains with (after any switch)
            optimizer = trainer.optimizers[0]
            self._lr = float(optimizer.param_groups[0]["lr"])
            self._optimizer = type(optimizer).__name__

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self._train_images += len(batch["labels"]) * trainer.world_size

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        elapsed = time.perf_counter() - self._epoch_start
        row: dict[str, Any] = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "lr": self._lr,
            "optimizer": self._optimizer,
            "epoch_time_s": round(elapsed, 3),
            "train_images_per_s": round(self._train_images / elapsed, 2) if elapsed > 0 else math.nan,
        }
        for key, value in sorted(trainer.callback_metrics.items()):
            if key == "train_loss_step":
                continue
            name = "train_loss" if key == "train_loss_epoch" else key
            row[name] = float(value)
        self.rows.append(row)
        log.info("epoch %d: %s", row["epoch"], ", ".join(
            f"{key} {value:.4g}" for key, value in row.items()
            if key in ("train_loss", "val_loss", "val_wll", "val_auc_any", "lr", "epoch_time_s")))
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False)
