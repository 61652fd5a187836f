"""Training runs: ``fit`` a config into a run directory, ``load_model`` it back for prediction.

Run directory (``config.run_dir(fold)`` = ``output_dir/name/fold<k>``)::

    config.yaml              the resolved config (every default written out)
    metrics.csv              one row per epoch (train loss, val loss, val_wll, per-class AUC, lr, time)
    checkpoints/best.ckpt    weights of the epoch with the lowest validation weighted log loss
    checkpoints/last.ckpt    full training state at the end of the latest epoch (for ``--resume``)
    input.json               the input contract (`ichscan.data.contract.InputContract`): how DICOM
                             becomes the network's input; also stored in every checkpoint
    oof.parquet              out-of-fold predictions of best.ckpt on the validation fold
    operating_point.json     the calibrated study-level triage threshold (`ichscan.train.operating_point`);
                             the run folder (``output_dir/name``) holds one pooled over its folds
    train.log                the run's log
    logs/                    step-level CSV (and TensorBoard, when installed) logs of Lightning
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger
from rich.progress import track
from torch import nn

from ichscan.config import ConfigError, ExperimentConfig, config_from_dict, dump_config
from ichscan.data.contract import (
    ContractError,
    InputContract,
    SplitRecipe,
    read_contract,
    write_contract,
)
from ichscan.data.dataset import SliceDataset, create_loader
from ichscan.data.windows import ChannelSpec, apply_windows
from ichscan.files import atomic_path
from ichscan.labels import LABELS
from ichscan.train.callbacks import AtomicCheckpointIO, EpochMetricsCSV
from ichscan.train.datamodule import SliceDataModule
from ichscan.train.operating_point import write_run_operating_points
from ichscan.train.resolve import RunError
from ichscan.train.module import (
    MONITOR,
    SliceClassifier,
    build_model,
    config_of_checkpoint,
    model_state,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.csv"
OOF_FILE = "oof.parquet"
LOG_FILE = "train.log"
CHECKPOINT_DIR = "checkpoints"

# Settings that may change when a run is resumed (more epochs, other hardware); all else must match.
RESUMABLE_CHANGES = frozenset({
    "output_dir", "data.cache_dir", "trainer.epochs", "trainer.num_workers", "trainer.progress_bar",
    "trainer.early_stopping_patience", "trainer.eval_batch_size", "trainer.accelerator",
    "trainer.devices", "trainer.strategy", "trainer.num_nodes",
})


@dataclass(frozen=True)
class LoadedModel:
    """A trained network ready for prediction, with the input contract it was trained under."""

    model: nn.Module
    config: ExperimentConfig
    contract: InputContract
    checkpoint: Path

    @property
    def channel_spec(self) -> ChannelSpec:
        """Windows × slice offsets and normalisation (from the contract)."""
        return self.contract.channel_spec

    @property
    def size(self) -> int:
        """The network's square input side in pixels (from the contract)."""
        return self.contract.input_size


def run_contract(config: ExperimentConfig, cache_dir: Path | None = None) -> InputContract:
    """The input contract of a stage-1 (or CNN-LSTM) config trained on `cache_dir` (default
    ``data.cache_dir``): the cache's ``meta.json`` gives its size and crop, the config the rest."""
    from ichscan.prepare.cache import META_FILE, read_settings

    cache = Path(config.data.cache_dir if cache_dir is None else cache_dir)
    try:
        settings = read_settings(cache)
    except ValueError as exc:
        raise ContractError(str(exc)) from exc
    if settings is None:
        raise ContractError(f"{cache / META_FILE}: missing; the input contract needs the cache the run trained on")
    try:
        import json

        opencv = json.loads((cache / META_FILE).read_text(encoding="utf-8")).get("opencv_version")
    except (OSError, ValueError):
        opencv = None
    split = config.data.split
    return InputContract.build(
        cache_size=settings.size, crop=settings.crop, cache_version=settings.version,
        windows=tuple(config.data.windows), offsets=tuple(config.data.offsets),
        normalize=config.data.normalize, input_size=config.data.size, opencv_version=opencv,
        spacing=settings.spacing,
        split=SplitRecipe(method=split.method, n_folds=split.n_folds, seed=split.seed, fold=config.data.fold,
                          group=split.group),
    )


def write_run_contract(run_dir: str | Path, cache_dir: str | Path | None = None) -> InputContract:
    """(Re)write ``RUN/input.json`` of an existing run from its ``config.yaml`` and the ``meta.json``
    of the cache it trained on (`cache_dir`, default the config's ``data.cache_dir``).

    The explicit upgrade of a run trained before contracts existed (`ichscan contract RUN --write`).
    A stage-2 ``two_stage`` run takes its stage-1 run's contract (its inputs are that network's).
    """
    run_dir = Path(run_dir)
    raw = _read_yaml(run_dir / CONFIG_FILE)
    if raw.get("kind") == "two_stage":
        stage1 = _stage1_of(run_dir)
        contract = read_contract(stage1)
    else:
        config = config_from_dict(_stage1_view(raw), str(run_dir / CONFIG_FILE))
        contract = run_contract(config, None if cache_dir is None else Path(cache_dir))
    write_contract(run_dir, contract)
    return contract


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not isinstance(raw, dict):
        raise RunError(f"{path}: not a run config")
    return raw


def _stage1_view(raw: dict[str, Any]) -> dict[str, Any]:
    """The stage-1 sections of a (possibly CNN-LSTM) config: what the input contract reads."""
    keys = ("name", "data", "model", "output_dir")
    return {key: raw[key] for key in keys if key in raw}


def _stage1_of(run_dir: Path) -> Path:
    import json

    path = run_dir / "stage1.json"
    try:
        return Path(json.loads(path.read_text(encoding="utf-8"))["run"])
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"{path}: cannot name the stage-1 run of this stage-2 run ({exc})") from exc


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _check_resumable(run_dir: Path, config: ExperimentConfig) -> None:
    stored_path = run_dir / CONFIG_FILE
    if not stored_path.exists():
        return
    raw = yaml.safe_load(stored_path.read_text(encoding="utf-8")) or {}
    try:  # settings added since the run started take their defaults, as they did then
        raw = config_from_dict(raw, str(stored_path)).model_dump(mode="json")
    except ConfigError:
        pass
    stored = _flatten(raw)
    current = _flatten(config.model_dump(mode="json"))
    changed = sorted(key for key in stored.keys() | current.keys()
                     if stored.get(key) != current.get(key) and key not in RESUMABLE_CHANGES)
    if changed:
        raise RunError(f"{stored_path}: cannot resume with a different config; changed: {', '.join(changed)}")


# Lightning output that tells a user nothing about their run (adverts, deprecations inside Lightning
# itself, the per-step logging interval of a short epoch, the worker-count hint): silenced in runs.
QUIET_WARNINGS: tuple[str, ...] = (
    r".*does not have many workers.*",
    r".*isinstance\(treespec, LeafSpec\).*",
    r".*smaller than the logging interval.*",
    r".*exists and is not empty.*",
)
QUIET_MESSAGES: tuple[str, ...] = ("💡 Tip:",)


class _DropAdverts(logging.Filter):
    """Drops Lightning's advert lines (`QUIET_MESSAGES`) from the console and train.log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(QUIET_MESSAGES)


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Run a Lightning fit without its noise (`QUIET_WARNINGS`, `QUIET_MESSAGES`); what remains is
    about the run. Used by stage-1, stage-2 and SimCLR training alike."""
    source = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where rank_zero_info logs
    adverts = _DropAdverts()
    source.addFilter(adverts)
    try:
        with warnings.catch_warnings():
            for pattern in QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        source.removeFilter(adverts)


@contextmanager
def _run_log(path: Path) -> Iterator[None]:
    """Copy the ``ichscan`` and Lightning loggers into the run's ``train.log`` (rank 0 only), with
    Lightning's noise silenced (`quiet_lightning`)."""
    if rank_zero_only.rank != 0:
        with quiet_lightning():
            yield
        return
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in ("ichscan", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        with quiet_lightning():
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()


def _loggers(run_dir: Path) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(run_dir, name="logs")]
    try:
        from lightning.pytorch.loggers import TensorBoardLogger

        import tensorboard  # noqa: F401  (optional dependency)

        loggers.append(TensorBoardLogger(run_dir, name="logs", version=loggers[0].version))
    except ImportError:
        pass
    return loggers


def resolve_precision(config: ExperimentConfig) -> str:
    """``trainer.precision`` with ``auto`` resolved: bf16-mixed where the device computes bf16
    natively (CUDA with bf16, CPUs with AVX-512 BF16/AMX: 1.5–2.7× faster on CPU), else 16-mixed on
    older GPUs and 32 on other CPUs (emulated bf16 would be slower than fp32)."""
    precision = config.trainer.precision
    if precision != "auto":
        return precision
    accelerator = config.trainer.accelerator
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    native_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)() or getattr(
        torch.cpu, "_is_amx_tile_supported", lambda: False)()
    return "bf16-mixed" if native_bf16 else "32"


def build_trainer(config: ExperimentConfig, run_dir: Path) -> pl.Trainer:
    """The Lightning ``Trainer`` of a run: checkpoints, metrics.csv, early stopping, progress, DDP."""
    trainer_cfg = config.trainer
    callbacks: list[pl.Callback] = [
        # best.ckpt: weights only (for prediction), lowest val_wll; last.ckpt: full state (for --resume).
        ModelCheckpoint(
            dirpath=run_dir / CHECKPOINT_DIR, filename="best", monitor=MONITOR, mode="min", save_top_k=1,
            save_weights_only=True, auto_insert_metric_name=False, enable_version_counter=False,
        ),
        ModelCheckpoint(dirpath=run_dir / CHECKPOINT_DIR, save_top_k=0, save_last=True,
                        enable_version_counter=False),
        EpochMetricsCSV(run_dir / METRICS_FILE),
    ]
    if trainer_cfg.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor=MONITOR, mode="min", patience=trainer_cfg.early_stopping_patience))
    if trainer_cfg.progress_bar:
        callbacks.append(RichProgressBar())
    return pl.Trainer(
        default_root_dir=run_dir,
        max_epochs=trainer_cfg.epochs,
        accelerator=trainer_cfg.accelerator,
        devices=trainer_cfg.devices,
        strategy=trainer_cfg.strategy,
        num_nodes=trainer_cfg.num_nodes,
        precision=resolve_precision(config),
        callbacks=callbacks,
        logger=_loggers(run_dir),
        plugins=[AtomicCheckpointIO()],
        enable_progress_bar=trainer_cfg.progress_bar,
        enable_model_summary=trainer_cfg.progress_bar,
        limit_train_batches=trainer_cfg.limit_train_batches,
        limit_val_batches=trainer_cfg.limit_val_batches,
        gradient_clip_val=trainer_cfg.gradient_clip_val,
        accumulate_grad_batches=trainer_cfg.accumulate_grad_batches,
        log_every_n_steps=10,
    )


def _loss_params(config: ExperimentConfig, datamodule: SliceDataModule) -> dict[str, Any]:
    """Data-dependent loss arguments: per-class positive/negative counts of the training fold."""
    from ichscan.train.losses import needs_label_counts

    if not needs_label_counts(config.loss.name, config.loss.params):
        return {}
    positives, negatives = datamodule.label_counts()
    return {"positives": positives.tolist(), "negatives": negatives.tolist()}


def fit(config: ExperimentConfig, fold: int | None = None, resume: bool = False) -> Path:
    """Train ``config`` on one fold and return its run directory.

    ``fold`` defaults to ``config.data.fold``. ``resume=True`` continues from
    ``checkpoints/last.ckpt`` (the stored config must match, except ``RESUMABLE_CHANGES``); without
    it an existing run is an error rather than overwritten. Multi-GPU / multi-node training is the
    standard Lightning path (``trainer.strategy=ddp``, ``devices``, ``num_nodes``).
    """
    fold = config.data.fold if fold is None else fold
    if not 0 <= fold < config.data.split.n_folds:
        raise ConfigError(f"fold {fold}: must be in 0..{config.data.split.n_folds - 1}")
    config = config.model_copy(update={"data": config.data.model_copy(update={"fold": fold})})
    run_dir = config.run_dir(fold)
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    if resume:
        if not last.exists():
            raise RunError(f"{last}: no checkpoint to resume from")
        _check_resumable(run_dir, config)
    elif rank_zero_only.rank == 0 and any((run_dir / CHECKPOINT_DIR).glob("*.ckpt")):
        raise RunError(f"{run_dir}: already holds a trained run; pass --resume to continue it, "
                       "or choose another name/output_dir")
    run_dir.mkdir(parents=True, exist_ok=True)

    with _run_log(run_dir / LOG_FILE):
        pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
        datamodule = SliceDataModule(config)
        datamodule.setup("fit")
        contract = run_contract(config)
        module = SliceClassifier(config, loss_params=_loss_params(config, datamodule), contract=contract)
        if rank_zero_only.rank == 0:
            with atomic_path(run_dir / CONFIG_FILE) as tmp:
                tmp.write_text(dump_config(config), encoding="utf-8")
            write_contract(run_dir, contract)
        trainer = build_trainer(config, run_dir)
        log.info("run %s: %s on fold %d, precision %s (trainer.precision %s)%s", run_dir, config.model.backbone,
                 fold, trainer.precision, config.trainer.precision, " (resumed)" if resume else "")
        trainer.fit(module, datamodule=datamodule, ckpt_path=last if resume else None)
        if trainer.is_global_zero:
            _write_oof(run_dir, config, datamodule, module)
            write_run_operating_points(run_dir)
            best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
            log.info("run %s finished: best %s %.5f", run_dir, MONITOR, float("nan") if best is None else float(best))
    return run_dir


def validated_rows(config: ExperimentConfig, n_rows: int) -> int:
    """How many validation rows (in loader order) Lightning scores under ``trainer.limit_val_batches``."""
    limit = config.trainer.limit_val_batches
    batch = config.trainer.eval_batch_size or 2 * config.trainer.batch_size
    n_batches = math.ceil(n_rows / batch)
    if limit is None or (isinstance(limit, float) and limit >= 1.0):
        return n_rows
    kept = int(limit) if isinstance(limit, int) else max(1, int(limit * n_batches))
    return min(n_rows, kept * batch)


def _write_oof(run_dir: Path, config: ExperimentConfig, datamodule: SliceDataModule, module: SliceClassifier) -> None:
    """Predict the validated rows of the validation fold with ``best.ckpt``; write ``oof.parquet``."""
    assert datamodule.val_slices is not None
    best = checkpoint_path(run_dir, "best")
    state = torch.load(best, map_location="cpu", weights_only=True)
    model = module.model.cpu()
    model.load_state_dict(dict(model_state(state)))
    assert module.contract is not None
    loaded = LoadedModel(model=model.eval(), config=config, contract=module.contract, checkpoint=best)
    n_rows = validated_rows(config, len(datamodule.val_slices))
    if n_rows < len(datamodule.val_slices):
        log.warning("oof.parquet holds the %d of %d validation slices scored under trainer.limit_val_batches",
                    n_rows, len(datamodule.val_slices))
    slices = datamodule.val_slices.iloc[:n_rows]
    probs = predict_slices(loaded, config.data.cache_dir, slices,
                           batch_size=config.trainer.eval_batch_size or 2 * config.trainer.batch_size,
                           workers=config.trainer.num_workers,
                           bf16=resolve_precision(config) == "bf16-mixed", progress=config.trainer.progress_bar)
    ids = [c for c in ("image_id", "study_instance_uid", "series_instance_uid", "slice_index") if c in slices]
    oof = slices[ids].copy()
    oof.insert(1, "fold", slices["fold"].astype(np.int32).to_numpy())
    for k, label in enumerate(LABELS):
        oof[label] = probs[:, k]
    for label in LABELS:
        oof[f"label_{label}"] = slices[label].astype(np.float32).to_numpy()
    with atomic_path(run_dir / OOF_FILE) as tmp:
        oof.to_parquet(tmp, index=False)


def predict_slices(
    loaded: LoadedModel,
    cache_dir: Path,
    slices: pd.DataFrame,
    batch_size: int = 64,
    workers: int = 0,
    bf16: bool = False,
    progress: bool = False,
) -> np.ndarray:
    """Sigmoid probabilities ``(n, 6)`` float32 of a loaded model on rows of a cache's slices table."""
    dataset = SliceDataset(cache_dir, slices, offsets=loaded.channel_spec.offsets, size=loaded.size)
    loader = create_loader(dataset, batch_size=batch_size, workers=workers)
    device = next(loaded.model.parameters()).device
    probs = np.empty((len(dataset), len(LABELS)), dtype=np.float32)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    batches = track(loader, description="out-of-fold predictions") if progress else loader
    with torch.inference_mode(), autocast:
        for batch in batches:
            x = apply_windows(batch["hu"].to(device), loaded.channel_spec).contiguous(memory_format=torch.channels_last)
            probs[batch["index"].numpy()] = torch.sigmoid(loaded.model(x).float()).cpu().numpy()
    return probs


def checkpoint_path(run_dir: Path, checkpoint: str = "best") -> Path:
    """``RUN/checkpoints/<checkpoint>.ckpt``, or ``checkpoint`` itself when it names a file."""
    candidate = Path(checkpoint)
    path = candidate if candidate.suffix == ".ckpt" else Path(run_dir) / CHECKPOINT_DIR / f"{checkpoint}.ckpt"
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found (is {run_dir} a finished `ichscan train` run?)")
    return path


def load_model(run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> LoadedModel:
    """The network of a run in eval mode (channels_last) with its config and input contract.

    RunError (one line) when the run has no input contract (`ichscan.data.contract.read_contract`).
    """
    path = checkpoint_path(Path(run_dir), checkpoint)
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (torch raises many kinds for a bad file)
        raise RunError(f"{path}: cannot read checkpoint ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    try:
        config = config_of_checkpoint(state, str(path))
    except (ValueError, ConfigError) as exc:
        raise RunError(str(exc)) from exc
    try:
        contract = read_contract(Path(run_dir), state)
    except ContractError as exc:
        raise RunError(str(exc)) from exc
    if contract.in_chans != config.data.in_chans:
        raise RunError(f"{Path(run_dir)}: input contract gives {contract.in_chans} channels, config.yaml "
                       f"{config.data.in_chans}; rewrite it with `ichscan contract {run_dir} --write`")
    model = build_model(config, pretrained=False)
    missing, unexpected = model.load_state_dict(dict(model_state(state)), strict=False)
    if missing or unexpected:
        raise RunError(f"{path}: weights do not fit {config.model.backbone} "
                       f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    model = model.to(device=device, memory_format=torch.channels_last).eval()
    return LoadedModel(model=model, config=config, contract=contract, checkpoint=path)


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved ``config.yaml`` of a run directory."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RunError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return config_from_dict(raw or {}, str(path))
