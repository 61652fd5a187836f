"""`ichscan pretrain`: SimCLR self-supervised pre-training of a backbone on unlabelled cache slices.

Run directory (``output_dir/name``)::

    config.yaml              the resolved `PretrainConfig`
    metrics.csv              one row per epoch (NT-Xent loss, learning rate, time)
    checkpoints/last.ckpt    Lightning checkpoint (backbone + projection head + optimiser)
    backbone.pt              the backbone's weights without classifier (a plain state dict)
    backbone.json            {"backbone": timm name, "in_chans": C}
    train.log

Supervised training starts from it with ``model.weights_path: RUN/backbone.pt`` (read by
`ichscan.models.load_weights`, which keeps every backbone weight and initialises a new classifier),
or in code with `load_simclr_backbone(RUN)`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from pydantic import Field
from torch import Tensor, nn

from ichscan.config import (
    ConfigError,
    Section,
    load_yaml_config,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainerConfig,
)
from ichscan.data.augment import AugmentConfig, create_augmentation
from ichscan.files import atomic_path
from ichscan.labels import N_LABELS
from ichscan.models.simclr import SimCLRModel, nt_xent_loss

log = logging.getLogger(__name__)

__all__ = [
    "BACKBONE_FILE",
    "PretrainConfig",
    "SimCLRModule",
    "load_pretrain_config",
    "load_simclr_backbone",
    "pretrain",
]

BACKBONE_FILE = "backbone.pt"
BACKBONE_META = "backbone.json"
LOSS_KEY = "simclr_loss"

# SimCLR needs strong views: crops, flips, affine, blur, noise and contrast, each often.
SIMCLR_AUGMENT: dict[str, Any] = {
    "hflip": 0.5,
    "vflip": 0.2,
    "affine": {"p": 0.8, "degrees": 20.0, "translate": 0.1, "scale": 0.15},
    "crop": {"p": 0.8, "scale": (0.5, 1.0), "ratio": (0.8, 1.25)},
    "blur": {"p": 0.4},
    "noise": {"p": 0.5},
    "contrast": {"p": 0.8, "contrast": 0.3, "brightness": 0.2},
}


class PretrainConfig(Section):
    """One SimCLR pre-training run; the sections are those of `ichscan.config.ExperimentConfig`.

    Every slice of ``data.cache_dir`` is used, labelled or not. ``temperature`` is τ of NT-Xent,
    ``projection_hidden``/``projection_dim`` size the projection head (thrown away afterwards).
    """

    name: str = Field("simclr", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    temperature: float = Field(0.1, gt=0.0)
    projection_hidden: int = Field(512, ge=1)
    projection_dim: int = Field(128, ge=1)
    augment: AugmentConfig = AugmentConfig.model_validate(SIMCLR_AUGMENT)
    optimizer: OptimizerConfig = OptimizerConfig(name="adamw", lr=1e-3, weight_decay=1e-4)
    scheduler: SchedulerConfig = SchedulerConfig()
    trainer: TrainerConfig = TrainerConfig(batch_size=64)
    output_dir: Path = Path("runs")

    def run_dir(self) -> Path:
        """``output_dir/name``."""
        return self.output_dir / self.name


def load_pretrain_config(path: Path, overrides: Sequence[str] = ()) -> PretrainConfig:
    """Read a SimCLR YAML config with ``key=value`` overrides; ``ConfigError`` naming file and key."""
    return load_yaml_config(path, PretrainConfig, overrides)


class SimCLRModule(pl.LightningModule):
    """Two augmented views of every slice of a batch → backbone → projection → NT-Xent.

    Batches are `ichscan.data.SliceDataset` items (int16 HU); windowing and both augmentations run
    on the device on the whole batch.
    """

    def __init__(self, config: PretrainConfig) -> None:
        super().__init__()
        from ichscan.train.module import build_model, channel_spec

        self.config = config
        self.spec = channel_spec(config)  # type: ignore[arg-type]  (reads .data only)
        backbone = build_model(config)  # type: ignore[arg-type]  (reads .model and .data only)
        self.model = SimCLRModel(backbone, config.projection_hidden, config.projection_dim)
        self.augment = create_augmentation(config.augment)

    def views(self, hu: Tensor) -> tuple[Tensor, Tensor]:
        """Two independently augmented windowed views ``(B, C, H, W)`` of int16 HU ``(B, S, H, W)``."""
        from ichscan.train.sequence import model_inputs

        x = model_inputs(hu, self.spec)
        return self.augment(x), self.augment(x)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        first, second = self.views(batch["hu"])
        loss = nt_xent_loss(self.model(first), self.model(second), self.config.temperature)
        self.log(LOSS_KEY, loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(first))
        return loss

    def configure_optimizers(self) -> Any:
        from ichscan.train.optim import lightning_optimizers

        return lightning_optimizers(self.parameters(), self.config.optimizer, self.config.scheduler,
                                    monitor=f"{LOSS_KEY}_epoch")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ichscan_simclr"] = {"config": self.config.model_dump(mode="json")}


def backbone_weights(backbone: nn.Module) -> dict[str, Tensor]:
    """The backbone's state dict without its classifier (timm ``pretrained_cfg["classifier"]``)."""
    classifier = backbone.pretrained_cfg.get("classifier")  # type: ignore[union-attr]
    names = (classifier,) if isinstance(classifier, str) else tuple(classifier or ())
    return {
        key: value.detach().cpu().contiguous()
        for key, value in backbone.state_dict().items()
        if not any(key.startswith(f"{name}.") for name in names)
    }


def pretrain(config: PretrainConfig) -> Path:
    """Run SimCLR on every slice of the cache; write the run directory and return it."""
    from ichscan.data.dataset import SliceDataset, create_loader
    from ichscan.prepare import read_slices
    from ichscan.train.callbacks import AtomicCheckpointIO, EpochMetricsCSV
    from ichscan.train.run import CHECKPOINT_DIR, CONFIG_FILE, LOG_FILE, METRICS_FILE, RunError, _run_log

    run_dir = config.run_dir()
    if any((run_dir / CHECKPOINT_DIR).glob("*.ckpt")):
        raise RunError(f"{run_dir}: already holds a pre-training run; choose another name or output_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    cache = config.data.cache_dir
    try:
        slices = read_slices(cache)
    except FileNotFoundError as exc:
        raise ConfigError(f"{cache}: not a prepared cache ({exc})") from exc
    trainer_cfg = config.trainer
    with _run_log(run_dir / LOG_FILE):
        pl.seed_everything(trainer_cfg.seed, workers=True, verbose=False)
        dataset = SliceDataset(cache, slices.reset_index(drop=True), offsets=config.data.offsets,
                               size=config.data.size)
        loader = create_loader(dataset, batch_size=trainer_cfg.batch_size, shuffle=True,
                               workers=trainer_cfg.num_workers, drop_last=len(dataset) > trainer_cfg.batch_size,
                               seed=trainer_cfg.seed)
        module = SimCLRModule(config)
        with atomic_path(run_dir / CONFIG_FILE) as tmp:
            tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        log.info("SimCLR %s on %d slices of %s", config.model.backbone, len(dataset), cache)
        callbacks: list[pl.Callback] = [
            ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, save_top_k=0, save_last=True),
            EpochMetricsCSV(run_dir / METRICS_FILE),
        ]
        if trainer_cfg.progress_bar:
            callbacks.append(RichProgressBar())
        trainer = pl.Trainer(
            default_root_dir=run_dir, max_epochs=trainer_cfg.epochs, accelerator=trainer_cfg.accelerator,
            devices=trainer_cfg.devices, strategy=trainer_cfg.strategy, num_nodes=trainer_cfg.num_nodes,
            precision=trainer_cfg.precision, callbacks=callbacks, logger=CSVLogger(run_dir, name="logs"),
            plugins=[AtomicCheckpointIO()], enable_progress_bar=trainer_cfg.progress_bar,
            enable_model_summary=trainer_cfg.progress_bar, limit_train_batches=trainer_cfg.limit_train_batches,
            limit_val_batches=0, gradient_clip_val=trainer_cfg.gradient_clip_val, log_every_n_steps=10,
        )
        trainer.fit(module, train_dataloaders=loader)
        if trainer.is_global_zero:
            with atomic_path(run_dir / BACKBONE_FILE) as tmp:
                torch.save(backbone_weights(module.model.backbone), tmp)
            with atomic_path(run_dir / BACKBONE_META) as tmp:
                meta = {"backbone": config.model.backbone, "in_chans": config.data.in_chans}
                tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return run_dir


def load_simclr_backbone(path: Path, num_classes: int = N_LABELS) -> nn.Module:
    """A timm classifier whose backbone comes from a SimCLR run (``RUN`` or ``RUN/backbone.pt``).

    The classifier is new (random); every other weight is checked to come from the file
    (`ichscan.models.load_weights`). Errors name the file and the reason.
    """
    from ichscan.models import create_model

    path = Path(path)
    weights = path / BACKBONE_FILE if path.is_dir() else path
    meta_path = weights.with_name(BACKBONE_META)
    if not meta_path.is_file():
        raise ValueError(f"{meta_path}: missing; is {weights.parent} an `ichscan pretrain` run?")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return create_model(meta["backbone"], in_chans=int(meta["in_chans"]), num_classes=num_classes,
                        weights_path=weights)
