"""Stage 2: slice embeddings of a trained run (`ichscan embed`) and sequence models over series
(`ichscan train-seq`), plus the end-to-end CNN-LSTM (seed 002, Table 5).

Features directory written by `extract_features` (``FEATURES/``)::

    slices.parquet   one row per slice, sorted by series_instance_uid, slice_index (ids + labels);
                     row i of the table is row i of the arrays
    embeddings.npy   float32 (N, D) pooled backbone embeddings
    logits.npy       float32 (N, 6) stage-1 logits (LABELS order)
    meta.json        {"run": stage-1 run dir, "checkpoint", "tta", "dim", "backbone", "version"}

A stage-2 run directory has the stage-1 layout (``config.yaml``, ``metrics.csv``,
``checkpoints/{best,last}.ckpt``, ``oof.parquet``, ``train.log``) plus ``stage1.json`` naming the
stage-1 run its features came from, so `predict_two_stage` can run both stages on new data.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
import yaml
from lightning.fabric.utilities.rank_zero import rank_zero_only
from pydantic import Field, model_validator
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ichscan.config import (
    ConfigError,
    Section,
    config_from_dict,
    load_yaml_config,
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    SchedulerConfig,
    TrainerConfig,
)
from ichscan.data.augment import AugmentConfig, create_augmentation
from ichscan.data.contract import InputContract, read_contract, write_contract
from ichscan.data.windows import ChannelSpec, apply_windows
from ichscan.dicom.index import ID_COLUMNS
from ichscan.files import atomic_path
from ichscan.labels import LABELS, N_LABELS
from ichscan.models.backbones import embedding_dim
from ichscan.models.sequence import (
    CNNLSTM,
    SequenceModel,
    create_sequence_model,
    slice_embeddings,
)

log = logging.getLogger(__name__)

__all__ = [
    "CNNLSTMModule",
    "LoadedSequenceModel",
    "SequenceConfig",
    "SequenceModelConfig",
    "SequenceModule",
    "SeriesFeatureDataset",
    "SeriesFeatures",
    "apply_sequence_model",
    "collate_feature_series",
    "compute_features",
    "extract_features",
    "fit_sequence",
    "is_sequence_run",
    "load_sequence_model",
    "load_sequence_config",
    "predict_two_stage",
    "read_features",
    "sequence_probabilities",
    "write_features",
]

FEATURES_VERSION = 1
SLICES_FILE = "slices.parquet"
EMBEDDINGS_FILE = "embeddings.npy"
LOGITS_FILE = "logits.npy"
META_FILE = "meta.json"
STAGE1_FILE = "stage1.json"
SEQUENCE_CHECKPOINT_KEY = "ichscan_sequence"
SORT_COLUMNS = ["series_instance_uid", "slice_index"]


# ---------------------------------------------------------------------------------------- features
@dataclass(frozen=True)
class SeriesFeatures:
    """Per-slice stage-1 outputs, rows sorted by series and anatomical order.

    ``slices`` has a RangeIndex: row ``i`` describes ``embeddings[i]`` and ``logits[i]``.
    """

    slices: pd.DataFrame
    embeddings: np.ndarray
    logits: np.ndarray
    meta: dict[str, Any]

    def __post_init__(self) -> None:
        n = len(self.slices)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n or self.logits.shape != (n, N_LABELS):
            raise ValueError(
                f"features disagree: {n} slices, embeddings {self.embeddings.shape}, logits {self.logits.shape}"
            )

    @property
    def labels(self) -> np.ndarray:
        """float32 ``(N, 6)`` labels, NaN where unknown (all NaN when the slices carry none)."""
        if not all(label in self.slices.columns for label in LABELS):
            return np.full((len(self.slices), N_LABELS), np.nan, dtype=np.float32)
        return self.slices[list(LABELS)].to_numpy(dtype=np.float32, na_value=np.nan)


def model_inputs(hu: Tensor, spec: ChannelSpec) -> Tensor:
    """int16 HU ``(B, S, H, W)`` already on the network grid (the dataset resized it) → windowed input."""
    return apply_windows(hu, spec)


def embed_inputs(model: nn.Module, x: Tensor, tta: bool = False) -> tuple[Tensor, Tensor]:
    """Pooled embeddings ``(B, D)`` and logits ``(B, 6)``; with ``tta`` both are averaged over the
    image and its horizontal mirror (the flip TTA of `ichscan predict`)."""
    embedding, logits = slice_embeddings(model, x)
    if tta:
        flipped_embedding, flipped_logits = slice_embeddings(model, torch.flip(x, dims=(-1,)))
        embedding = (embedding + flipped_embedding) / 2
        logits = (logits + flipped_logits) / 2
    return embedding.float(), logits.float()


def compute_features(
    loaded: Any,
    cache_dir: Path,
    slices: pd.DataFrame,
    *,
    tta: bool = False,
    batch_size: int = 32,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings ``(N, D)`` and logits ``(N, 6)`` of a `LoadedModel` for the rows of ``slices``.

    Neighbour stacks are read series by series from the cache (`ichscan.data.batches`).
    """
    from ichscan.data.batches import iter_hu_batches

    model = loaded.model.eval()
    device = next(model.parameters()).device
    dim = embedding_dim(model)
    embeddings = np.zeros((len(slices), dim), dtype=np.float32)
    logits = np.zeros((len(slices), N_LABELS), dtype=np.float32)
    offsets = tuple(loaded.channel_spec.offsets)
    columns = (TextColumn("embed"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, torch.inference_mode():
        task = bar.add_task("slices", total=len(slices))
        for rows, hu in iter_hu_batches(Path(cache_dir), slices, offsets, batch_size):
            x = loaded.contract.network_input(hu, device)
            x = x.contiguous(memory_format=torch.channels_last)
            embedding, logit = embed_inputs(model, x, tta)
            embeddings[rows] = embedding.cpu().numpy()
            logits[rows] = logit.cpu().numpy()
            bar.advance(task, len(rows))
    return embeddings, logits


def _feature_slices(slices: pd.DataFrame) -> pd.DataFrame:
    """The id and label columns of ``slices``, sorted by series and slice_index, RangeIndex."""
    missing = [c for c in ("series_instance_uid", "slice_index") if c not in slices.columns]
    if missing:
        raise ValueError(f"slices table lacks column(s) {missing}")
    keep = [c for c in (*ID_COLUMNS, *LABELS) if c in slices.columns]
    return slices[keep].sort_values(SORT_COLUMNS, kind="stable").reset_index(drop=True)


def extract_features(
    run_dir: Path,
    cache_dir: Path | None,
    out_dir: Path,
    *,
    slices: pd.DataFrame | None = None,
    tta: bool = False,
    batch_size: int = 32,
    checkpoint: str = "best",
    progress: bool = True,
    fold: int | None = None,
) -> SeriesFeatures:
    """`ichscan embed`: embed every slice of a cache (or the given rows) with a run; write FEATURES/.

    ``run_dir`` is resolved by `ichscan.train.resolve.resolve_run` (one stage-1 network: ``fold``
    for a run folder with several). ``cache_dir`` None means the run's own ``data.cache_dir``; the
    cache must have been prepared as the run's input contract says.
    """
    from ichscan.prepare import read_slices
    from ichscan.train.resolve import RunError, resolve_run
    from ichscan.train.run import load_model

    resolved = resolve_run(run_dir, fold)
    if resolved.stage != 1:
        raise RunError(f"{run_dir}: a stage-2 run; `ichscan embed` takes the stage-1 run")
    run_dir = resolved.single("embed")
    loaded = load_model(run_dir, checkpoint)
    cache_dir = Path(loaded.config.data.cache_dir if cache_dir is None else cache_dir)
    loaded.contract.check_cache(cache_dir)
    table = _feature_slices(read_slices(cache_dir) if slices is None else slices)
    embeddings, logits = compute_features(
        loaded, Path(cache_dir), table, tta=tta, batch_size=batch_size, progress=progress
    )
    meta = {
        "version": FEATURES_VERSION,
        "run": str(Path(run_dir).resolve()),
        "checkpoint": checkpoint,
        "tta": tta,
        "dim": int(embeddings.shape[1]),
        "backbone": loaded.config.model.backbone,
        "split": loaded.config.data.split.model_dump(mode="json"),
        "fold": loaded.config.data.fold,
        "input": loaded.contract.to_json(),
    }
    features = SeriesFeatures(table, embeddings, logits, meta)
    write_features(features, out_dir)
    return features


def write_features(features: SeriesFeatures, out_dir: Path) -> None:
    """Write the FEATURES/ directory (each file atomically; meta.json last marks it complete)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / SLICES_FILE) as tmp:
        features.slices.to_parquet(tmp, index=False)
    with atomic_path(out_dir / EMBEDDINGS_FILE) as tmp:
        np.save(tmp, features.embeddings.astype(np.float32))
    with atomic_path(out_dir / LOGITS_FILE) as tmp:
        np.save(tmp, features.logits.astype(np.float32))
    with atomic_path(out_dir / META_FILE) as tmp:
        tmp.write_text(json.dumps(features.meta, indent=2), encoding="utf-8")


def read_features(path: Path) -> SeriesFeatures:
    """Read a FEATURES/ directory; ``ValueError`` naming the file when it is missing or inconsistent."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise ValueError(f"{meta_path}: missing; is {path} the output of `ichscan embed`?")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        slices = pd.read_parquet(path / SLICES_FILE)
        embeddings = np.load(path / EMBEDDINGS_FILE)
        logits = np.load(path / LOGITS_FILE)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read features ({exc.__class__.__name__}: {exc})") from exc
    try:
        features = SeriesFeatures(slices, embeddings, logits, meta)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    order = slices[SORT_COLUMNS]
    if not order.equals(order.sort_values(SORT_COLUMNS, kind="stable")):
        raise ValueError(f"{path / SLICES_FILE}: rows are not sorted by series_instance_uid, slice_index")
    return features


# --------------------------------------------------------------------------------- series batches
def series_bounds(series_uids: np.ndarray) -> np.ndarray:
    """Start positions of each run of equal series ids plus the end: ``(n_series + 1,)``."""
    values = np.asarray(series_uids)
    if len(values) == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    return np.concatenate([[0], change, [len(values)]]).astype(np.int64)


class SeriesFeatureDataset(Dataset[dict[str, Tensor]]):
    """One item per series of a `SeriesFeatures` (optionally only the series of ``rows``).

    Item → ``{"embeddings": (T, D), "logits": (T, 6), "labels": (T, 6), "index": (T,) rows}``.
    """

    def __init__(self, features: SeriesFeatures, rows: np.ndarray | None = None) -> None:
        self.features = features
        self.labels = features.labels
        selected = np.arange(len(features.slices)) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
        uids = features.slices["series_instance_uid"].to_numpy()[selected]
        bounds = series_bounds(uids)
        self.rows: list[np.ndarray] = [selected[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rows = self.rows[index]
        return {
            "embeddings": torch.from_numpy(self.features.embeddings[rows]),
            "logits": torch.from_numpy(self.features.logits[rows]),
            "labels": torch.from_numpy(self.labels[rows]),
            "index": torch.from_numpy(rows),
        }


def pad_series(tensors: Sequence[Tensor], fill: float) -> Tensor:
    """Stack ``(T_i, ...)`` tensors into ``(B, max T, ...)``, padding after each with ``fill``."""
    return nn.utils.rnn.pad_sequence(list(tensors), batch_first=True, padding_value=fill)


def collate_feature_series(items: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Pad series to the longest: embeddings/logits 0, labels NaN, index −1, bool ``mask`` ``(B, T)``."""
    lengths = torch.tensor([len(item["index"]) for item in items])
    return {
        "embeddings": pad_series([item["embeddings"] for item in items], 0.0),
        "logits": pad_series([item["logits"] for item in items], 0.0),
        "labels": pad_series([item["labels"] for item in items], float("nan")),
        "index": pad_series([item["index"] for item in items], -1),
        "mask": torch.arange(int(lengths.max()))[None, :] < lengths[:, None],
    }


# ------------------------------------------------------------------------------------- config
class SequenceModelConfig(Section):
    """``ichscan.models.sequence.create_sequence_model``: bidirectional LSTM/GRU or dilated conv."""

    name: Literal["lstm", "gru", "conv"] = "lstm"
    hidden: int = Field(64, ge=1)
    layers: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    residual: bool = Field(True, description="predict a correction of the stage-1 logits")
    kernel_size: int = Field(3, ge=1, description="conv only; odd")

    def build(self, in_features: int) -> SequenceModel:
        """The configured model for embeddings of size ``in_features``."""
        extra: dict[str, Any] = {"residual": self.residual}
        if self.name == "conv":
            extra["kernel_size"] = self.kernel_size
        return create_sequence_model(
            self.name, in_features, N_LABELS, hidden=self.hidden, layers=self.layers,
            dropout=self.dropout, **extra,
        )


class SequenceConfig(Section):
    """One stage-2 experiment (`ichscan train-seq --config`).

    ``kind: two_stage`` trains the sequence model on FEATURES of `ichscan embed` (``features``);
    ``kind: cnn_lstm`` trains a CNN (``model``, ``data``, ``augment``) and the sequence model jointly
    on chunks of ``chunk`` consecutive slices, adding ``slice_loss_weight`` × the per-slice loss.
    Folds come from ``data.split`` and must keep whole patients together (series are never cut).
    ``trainer.batch_size`` counts series.
    """

    kind: Literal["two_stage", "cnn_lstm"] = "two_stage"
    name: str = Field("sequence", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    features: Path | None = None
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    sequence: SequenceModelConfig = SequenceModelConfig()
    chunk: int = Field(16, ge=2, description="cnn_lstm: slices per training chunk")
    slice_loss_weight: float = Field(0.5, ge=0.0, description="cnn_lstm: weight of the per-slice loss")
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    trainer: TrainerConfig = TrainerConfig(batch_size=8, num_workers=0)
    output_dir: Path = Path("runs")

    @model_validator(mode="after")
    def _consistent(self) -> SequenceConfig:
        if self.kind == "two_stage" and self.features is None:
            raise ValueError("features: required for kind two_stage (the output of `ichscan embed`)")
        if self.data.split.method not in ("patient", "patient_stratified"):
            raise ValueError(
                f"data.split.method: {self.data.split.method!r} would cut series across folds; "
                "use patient or patient_stratified"
            )
        if self.data.fold >= self.data.split.n_folds:
            raise ValueError(f"data.fold={self.data.fold} but data.split.n_folds={self.data.split.n_folds}")
        if self.optimizer.switch_to is not None:
            raise ValueError("optimizer.switch_to: not supported for sequence models")
        return self

    def run_dir(self, fold: int | None = None) -> Path:
        """``output_dir/name/fold<k>`` as for stage-1 runs."""
        return self.output_dir / self.name / f"fold{self.data.fold if fold is None else fold}"


def sequence_config_from_dict(raw: dict[str, Any], source: str = "<config>") -> SequenceConfig:
    """Validate a dict; ``ConfigError`` naming ``source``, the key and the reason."""
    return config_from_dict(raw, source, SequenceConfig)


def load_sequence_config(path: Path, overrides: Sequence[str] = ()) -> SequenceConfig:
    """Read a stage-2 YAML config with ``key=value`` overrides (as `ichscan.config.load_config`)."""
    return load_yaml_config(path, SequenceConfig, overrides)


# ------------------------------------------------------------------------------ lightning modules
class SequenceModule(pl.LightningModule):
    """Stage 2 on precomputed features: ``model(embeddings, logits, mask)`` with a masked loss on
    labelled valid slices and the stage-1 validation metrics (``val_wll`` selects ``best.ckpt``)."""

    def __init__(
        self,
        config: SequenceConfig,
        in_features: int,
        model: nn.Module | None = None,
        loss_params: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from ichscan.train.losses import create_loss

        self.config = config
        self.in_features = in_features
        self.loss_params = dict(loss_params or {})
        self.model = config.sequence.build(in_features) if model is None else model
        self.criterion = create_loss(config.loss.name, **{**config.loss.params, **self.loss_params})
        self.contract: InputContract | None = None  # set by fit_sequence; stored in checkpoints
        self._val_outputs: list[tuple[Tensor, Tensor, Tensor]] = []

    def masked_loss(self, logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        """The configured loss over the valid slices of a padded batch (NaN labels are masked by it)."""
        return self.criterion(logits[mask].float(), labels[mask])

    def series_logits(self, batch: dict[str, Tensor], train: bool) -> tuple[Tensor, Tensor]:
        """Sequence logits ``(B, T, 6)`` of a padded batch and its extra training loss (here 0)."""
        logits = self.model(batch["embeddings"], batch["logits"], batch["mask"])
        return logits, logits.new_zeros(())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        logits, extra = self.series_logits(batch, train=True)
        loss = self.masked_loss(logits, batch["labels"], batch["mask"]) + extra
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=int(batch["mask"].sum()))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        logits, _ = self.series_logits(batch, train=False)
        mask = batch["mask"]
        self.log("val_loss", self.masked_loss(logits, batch["labels"], mask), on_epoch=True,
                 batch_size=int(mask.sum()))
        self._val_outputs.append((batch["index"][mask], torch.sigmoid(logits[mask].float()), batch["labels"][mask]))

    def on_validation_epoch_end(self) -> None:
        from ichscan.train.module import MONITOR, validation_metrics

        if not self._val_outputs:
            return
        probs = torch.cat([out[1] for out in self._val_outputs]).cpu().numpy()
        labels = torch.cat([out[2] for out in self._val_outputs]).cpu().numpy()
        self._val_outputs = []
        labelled = ~np.isnan(labels).any(axis=1)
        metrics = validation_metrics(labels[labelled], probs[labelled])
        self.log_dict({k: v for k, v in metrics.items() if k != MONITOR})
        self.log(MONITOR, metrics[MONITOR], prog_bar=True)

    def configure_optimizers(self) -> Any:
        from ichscan.train.module import MONITOR
        from ichscan.train.optim import lightning_optimizers

        return lightning_optimizers(self.parameters(), self.config.optimizer, self.config.scheduler, MONITOR)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[SEQUENCE_CHECKPOINT_KEY] = {"config": self.config.model_dump(mode="json"),
                                               "in_features": self.in_features,
                                               "loss_params": self.loss_params}
        if self.contract is not None:
            checkpoint["ichscan"] = {"input": self.contract.to_json()}


def neighbour_positions(lengths: Tensor, steps: int, offsets: Sequence[int]) -> Tensor:
    """``(B, T, S)`` positions ``clip(t + offset, 0, length − 1)`` of each slice's neighbours."""
    t = torch.arange(steps, device=lengths.device)[None, :, None]
    offset = torch.as_tensor(list(offsets), device=lengths.device)[None, None, :]
    last = (lengths - 1).clamp(min=0)[:, None, None]
    return torch.minimum((t + offset).clamp(min=0), last)


class CNNLSTMModule(SequenceModule):
    """End-to-end CNN-LSTM on series of int16 HU (`ichscan.data.SeriesDataset` batches).

    Neighbour stacks (``data.offsets``) are gathered inside each series, windowed and augmented on the
    device; the loss is ``L(sequence) + slice_loss_weight · L(slice logits)``.
    """

    def __init__(
        self, config: SequenceConfig, in_features: int = 0, loss_params: dict[str, Any] | None = None
    ) -> None:
        from ichscan.train.module import build_model, channel_spec

        backbone = build_model(config)  # type: ignore[arg-type]  (reads .model and .data only)
        seq = config.sequence
        extra: dict[str, Any] = {"residual": seq.residual}
        if seq.name == "conv":
            extra["kernel_size"] = seq.kernel_size
        model = CNNLSTM(backbone, sequence=seq.name, hidden=seq.hidden, layers=seq.layers,
                        dropout=seq.dropout, **extra)
        super().__init__(config, embedding_dim(backbone), model, loss_params)
        self.spec = channel_spec(config)  # type: ignore[arg-type]  (reads .data only)
        self.augment = create_augmentation(config.augment)

    def series_logits(self, batch: dict[str, Tensor], train: bool) -> tuple[Tensor, Tensor]:
        hu, mask = batch["hu"], batch["mask"]
        lengths = mask.sum(dim=1)
        positions = neighbour_positions(lengths, mask.shape[1], self.spec.offsets)
        batch_index = torch.arange(hu.shape[0], device=hu.device)[:, None, None]
        stacks = hu[batch_index, positions][mask]  # (N valid, S, H, W)
        x = model_inputs(stacks, self.spec)
        if train:
            x = self.augment(x)
        out = self.model.forward_valid(x, mask)
        extra = out.sequence_logits.new_zeros(())
        if train and self.config.slice_loss_weight > 0:
            extra = self.config.slice_loss_weight * self.masked_loss(out.slice_logits, batch["labels"], mask)
        return out.sequence_logits, extra


def random_chunks(items: Sequence[dict[str, Any]], chunk: int, generator: torch.Generator) -> list[dict[str, Any]]:
    """Cut each series item to a random window of at most ``chunk`` consecutive slices.

    Neighbour stacks are then built inside the window, so at its edges the outer neighbour is the
    edge slice itself (as at a series end); evaluation sees whole series.
    """
    cut = []
    for item in items:
        length = int(item["hu"].shape[0])
        if length <= chunk:
            cut.append(item)
            continue
        start = int(torch.randint(0, length - chunk + 1, (1,), generator=generator))
        cut.append({k: v[start : start + chunk] if isinstance(v, Tensor) else v for k, v in item.items()})
    return cut


class _ChunkCollate:
    """Picklable collate: random chunks (training) then `ichscan.data.collate_series` padding."""

    def __init__(self, chunk: int | None, seed: int) -> None:
        self.chunk = chunk
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        from ichscan.data.dataset import collate_series

        if self.chunk is not None:
            items = random_chunks(items, self.chunk, self.generator)
        return collate_series(items)


# ------------------------------------------------------------------------------------ fitting
def _series_folds(config: SequenceConfig, slices: pd.DataFrame) -> np.ndarray:
    """Fold per row from ``data.split`` (patient-grouped, so a series never spans two folds)."""
    from ichscan.data.splits import assign_folds

    split = config.data.split
    return assign_folds(slices, method=split.method, n_folds=split.n_folds, seed=split.seed,
                        group_col=split.group).to_numpy()


@dataclass
class _FoldData:
    """One fold of a stage-2 experiment: loaders, the validation rows, the training labels."""

    train_loader: DataLoader[Any]
    val_loader: DataLoader[Any]
    val_slices: pd.DataFrame
    train_labels: np.ndarray
    in_features: int
    stage1: dict[str, Any]


def _fold_data(config: SequenceConfig, fold: int) -> _FoldData:
    """Training and validation loaders of one fold (whole series in each)."""
    trainer = config.trainer
    if config.kind == "two_stage":
        assert config.features is not None
        features = read_features(config.features)
        labelled = ~np.isnan(features.labels).all(axis=1)
        slices = features.slices.assign(fold=-1)
        slices.loc[labelled, "fold"] = _series_folds(config, features.slices.loc[labelled])
        train_rows = np.flatnonzero((slices["fold"] != fold) & labelled)
        val_rows = np.flatnonzero(slices["fold"] == fold)
        train_set = SeriesFeatureDataset(features, train_rows)
        val_set = SeriesFeatureDataset(features, val_rows)
        collate: Any = collate_feature_series
        val_collate: Any = collate_feature_series
        train_labels = features.labels[train_rows]
        in_features = int(features.embeddings.shape[1])
        stage1: dict[str, Any] = {k: features.meta[k] for k in ("run", "checkpoint", "tta", "input")
                                  if k in features.meta}
    else:
        from ichscan.data.dataset import SeriesDataset
        from ichscan.prepare import read_slices
        from ichscan.train.datamodule import labelled_slices

        cache = config.data.cache_dir
        slices = labelled_slices(read_slices(cache), config.data.labels, str(cache))
        slices = slices.sort_values(SORT_COLUMNS, kind="stable").reset_index(drop=True)
        slices["fold"] = _series_folds(config, slices)
        val_rows = np.flatnonzero(slices["fold"] == fold)
        train_slices = slices.iloc[np.flatnonzero(slices["fold"] != fold)].reset_index(drop=True)
        train_set = SeriesDataset(cache, train_slices, size=config.data.size)
        train_labels = train_slices[list(LABELS)].to_numpy(dtype=np.float32, na_value=np.nan)
        val_set = SeriesDataset(cache, slices, size=config.data.size)  # index = row of `slices`
        val_set = torch.utils.data.Subset(val_set, _series_positions(slices, val_rows))
        collate = _ChunkCollate(config.chunk, trainer.seed)
        val_collate = _ChunkCollate(None, trainer.seed)
        in_features = 0
        stage1 = {}
    if len(train_set) == 0 or len(val_set) == 0:
        raise ConfigError(f"fold {fold} leaves no training or no validation series")
    train_loader = DataLoader(train_set, batch_size=trainer.batch_size, shuffle=True, collate_fn=collate,
                              num_workers=trainer.num_workers,
                              generator=torch.Generator().manual_seed(trainer.seed))
    val_loader = DataLoader(val_set, batch_size=trainer.eval_batch_size or trainer.batch_size,
                            collate_fn=val_collate, num_workers=trainer.num_workers)
    return _FoldData(train_loader, val_loader, slices.iloc[val_rows], train_labels, in_features, stage1)


def _series_positions(slices: pd.DataFrame, rows: np.ndarray) -> list[int]:
    """Positions, in `SeriesDataset` order (first appearance), of the series holding ``rows``."""
    codes, _ = pd.factorize(slices["series_instance_uid"].astype(str), sort=False)
    return sorted(set(codes[rows].tolist()))


def _loss_params(config: SequenceConfig, train_labels: np.ndarray) -> dict[str, Any]:
    """Per-class positive/negative counts of the training fold when the loss needs them."""
    from ichscan.train.losses import needs_label_counts

    if not needs_label_counts(config.loss.name, config.loss.params):
        return {}
    return {"positives": np.nansum(train_labels, axis=0).tolist(),
            "negatives": np.sum(train_labels == 0, axis=0).tolist()}


def fit_sequence(config: SequenceConfig, fold: int | None = None) -> Path:
    """Train a stage-2 config on one fold; write the run directory and return it."""
    from ichscan.train.run import (
        CHECKPOINT_DIR,
        CONFIG_FILE,
        LOG_FILE,
        RunError,
        _run_log,
        build_trainer,
    )

    fold = config.data.fold if fold is None else fold
    if not 0 <= fold < config.data.split.n_folds:
        raise ConfigError(f"fold {fold}: must be in 0..{config.data.split.n_folds - 1}")
    config = config.model_copy(update={"data": config.data.model_copy(update={"fold": fold})})
    run_dir = config.run_dir(fold)
    if any((run_dir / CHECKPOINT_DIR).glob("*.ckpt")):
        raise RunError(f"{run_dir}: already holds a trained run; choose another name or output_dir")
    run_dir.mkdir(parents=True, exist_ok=True)
    with _run_log(run_dir / LOG_FILE):
        pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
        data = _fold_data(config, fold)
        loss_params = _loss_params(config, data.train_labels)
        module = (
            SequenceModule(config, data.in_features, loss_params=loss_params)
            if config.kind == "two_stage"
            else CNNLSTMModule(config, loss_params=loss_params)
        )
        module.contract = _sequence_contract(config, data.stage1)
        if rank_zero_only.rank == 0:
            with atomic_path(run_dir / CONFIG_FILE) as tmp:
                tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
            write_contract(run_dir, module.contract)
            if data.stage1:
                with atomic_path(run_dir / STAGE1_FILE) as tmp:
                    tmp.write_text(json.dumps(data.stage1, indent=2), encoding="utf-8")
        trainer = build_trainer(config, run_dir)  # type: ignore[arg-type]  (reads .trainer only)
        log.info("stage-2 run %s: %s (%s) on fold %d, precision %s", run_dir, config.kind, config.sequence.name,
                 fold, trainer.precision)
        trainer.fit(module, train_dataloaders=data.train_loader, val_dataloaders=data.val_loader)
        if trainer.is_global_zero:
            _write_oof(run_dir, data.val_loader, data.val_slices, fold)
            from ichscan.train.operating_point import write_run_operating_points

            write_run_operating_points(run_dir)
    return run_dir


def _sequence_contract(config: SequenceConfig, stage1: dict[str, Any]) -> InputContract:
    """The input contract of a stage-2 run: its stage-1 run's (two_stage: carried by the features,
    else read from that run), or its own CNN's from the config and the cache (cnn_lstm)."""
    from ichscan.config import ExperimentConfig
    from ichscan.train.run import run_contract

    if config.kind == "two_stage":
        if "input" in stage1:
            return InputContract.from_json(stage1["input"], f"{config.features}/{META_FILE}")
        return read_contract(Path(stage1["run"]))
    view = ExperimentConfig.model_validate({"name": config.name, "data": config.data.model_dump(mode="json"),
                                            "model": config.model.model_dump(mode="json")})
    return run_contract(view)


def _write_oof(run_dir: Path, val_loader: DataLoader[Any], val_slices: pd.DataFrame, fold: int) -> None:
    """Probabilities of ``best.ckpt`` on the validation series → ``oof.parquet`` (stage-1 columns)."""
    from ichscan.train.run import OOF_FILE

    loaded = load_sequence_model(run_dir, "best")
    rows, values = [], []
    with torch.inference_mode():
        for batch in val_loader:
            logits, _ = loaded.module.series_logits(batch, train=False)
            mask = batch["mask"]
            rows.append(batch["index"][mask].numpy())
            values.append(torch.sigmoid(logits[mask].float()).numpy())
    position = pd.Series(np.arange(sum(len(r) for r in rows)), index=np.concatenate(rows))
    prob = np.concatenate(values)[position.loc[val_slices.index].to_numpy()]
    ids = [c for c in ("image_id", "study_instance_uid", "series_instance_uid", "slice_index") if c in val_slices]
    oof = val_slices[ids].reset_index(drop=True)
    oof.insert(1, "fold", np.int32(fold))
    for k, label in enumerate(LABELS):
        oof[label] = prob[:, k]
    for label in LABELS:
        oof[f"label_{label}"] = val_slices[label].astype(np.float32).to_numpy()
    with atomic_path(run_dir / OOF_FILE) as tmp:
        oof.to_parquet(tmp, index=False)


# ------------------------------------------------------------------------------ loading, predict
@dataclass(frozen=True)
class LoadedSequenceModel:
    """A trained stage-2 model (eval mode) with its config and the stage-1 run it builds on."""

    module: SequenceModule
    config: SequenceConfig
    stage1: dict[str, Any]
    checkpoint: Path

    @property
    def model(self) -> nn.Module:
        """The `SequenceModel` (two_stage) or `CNNLSTM` (cnn_lstm)."""
        return self.module.model  # type: ignore[return-value]


def is_sequence_run(run_dir: Path) -> bool:
    """True when ``run_dir`` is a `train-seq` run (its config.yaml has a ``kind`` key)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return False
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return isinstance(raw, dict) and raw.get("kind") in ("two_stage", "cnn_lstm")


def load_sequence_model(run_dir: Path, checkpoint: str = "best") -> LoadedSequenceModel:
    """Load a stage-2 run's checkpoint (CPU, eval mode); ``RunError`` naming the file on failure."""
    from ichscan.train.run import RunError, checkpoint_path

    path = checkpoint_path(Path(run_dir), checkpoint)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        stored = state[SEQUENCE_CHECKPOINT_KEY]
    except Exception as exc:  # noqa: BLE001  (torch raises many kinds for a bad file)
        raise RunError(f"{path}: not a stage-2 checkpoint ({exc.__class__.__name__}: {str(exc)[:200]})") from exc
    config = sequence_config_from_dict(stored["config"], str(path))
    builder = SequenceModule if config.kind == "two_stage" else CNNLSTMModule
    module = builder(config, int(stored["in_features"]), loss_params=stored.get("loss_params"))
    module.load_state_dict(state["state_dict"])
    stage1_path = Path(run_dir) / STAGE1_FILE
    stage1 = json.loads(stage1_path.read_text(encoding="utf-8")) if stage1_path.is_file() else {}
    return LoadedSequenceModel(module.eval(), config, stage1, path)


def sequence_probabilities(
    model: SequenceModel,
    series_uids: np.ndarray,
    embeddings: np.ndarray,
    logits: np.ndarray,
    batch_size: int = 16,
) -> np.ndarray:
    """Stage-2 probabilities ``(N, 6)`` for rows already sorted by series and slice_index."""
    bounds = series_bounds(series_uids)
    probs = np.zeros((len(series_uids), N_LABELS), dtype=np.float32)
    starts, ends = bounds[:-1], bounds[1:]
    with torch.inference_mode():
        for first in range(0, len(starts), batch_size):
            spans = list(zip(starts[first : first + batch_size], ends[first : first + batch_size]))
            emb = pad_series([torch.from_numpy(embeddings[a:b]) for a, b in spans], 0.0)
            lgt = pad_series([torch.from_numpy(logits[a:b]) for a, b in spans], 0.0)
            lengths = torch.tensor([b - a for a, b in spans])
            mask = torch.arange(emb.shape[1])[None, :] < lengths[:, None]
            out = torch.sigmoid(model(emb.float(), lgt.float(), mask).float())[mask].numpy()
            probs[spans[0][0] : spans[-1][1]] = out
    return probs


def apply_sequence_model(
    run_dir: Path,
    slice_predictions: pd.DataFrame,
    embeddings: np.ndarray,
    logits: np.ndarray | None = None,
) -> pd.DataFrame:
    """Stage 2 on stage-1 outputs: a copy of ``slice_predictions`` with the six columns replaced.

    ``slice_predictions`` has ``series_instance_uid``, ``slice_index`` and the six stage-1
    probabilities (any row order); ``embeddings`` ``(N, D)`` are aligned with its rows. Without
    ``logits`` they are recovered from the probabilities (``log p − log(1 − p)``, clipped).
    """
    loaded = load_sequence_model(run_dir)
    if loaded.config.kind != "two_stage":
        raise ValueError(f"{run_dir}: a cnn_lstm run needs images, not stage-1 outputs")
    if len(embeddings) != len(slice_predictions):
        raise ValueError(f"{len(embeddings)} embeddings for {len(slice_predictions)} slice predictions")
    if logits is None:
        p = np.clip(slice_predictions[list(LABELS)].to_numpy(dtype=np.float64), 1e-7, 1 - 1e-7)
        logits = np.log(p) - np.log1p(-p)
    order = np.lexsort((slice_predictions["slice_index"].to_numpy(),
                        slice_predictions["series_instance_uid"].astype(str).to_numpy()))
    probs = sequence_probabilities(
        loaded.model,  # type: ignore[arg-type]
        slice_predictions["series_instance_uid"].astype(str).to_numpy()[order],
        np.asarray(embeddings, dtype=np.float32)[order],
        np.asarray(logits, dtype=np.float32)[order],
    )
    result = slice_predictions.copy()
    values = np.empty_like(probs)
    values[order] = probs
    result[list(LABELS)] = values
    return result


def predict_two_stage(
    run_dir: Path,
    cache_dir: Path,
    slices: pd.DataFrame,
    *,
    tta: bool | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """Both stages on rows of a cache's slices table → stage-2 probabilities ``(N, 6)`` in row order.

    ``two_stage`` runs embed with the stage-1 run named in ``stage1.json`` (its TTA setting unless
    ``tta`` is given); ``cnn_lstm`` runs see each whole series at once.
    """
    loaded = load_sequence_model(run_dir)
    table = slices.reset_index(drop=True)
    order = np.lexsort((table["slice_index"].to_numpy(), table["series_instance_uid"].astype(str).to_numpy()))
    sorted_rows = table.iloc[order].reset_index(drop=True)
    if loaded.config.kind == "two_stage":
        from ichscan.train.run import load_model

        if not loaded.stage1:
            raise ValueError(f"{Path(run_dir) / STAGE1_FILE}: missing; cannot find the stage-1 run")
        stage1 = load_model(Path(loaded.stage1["run"]), loaded.stage1.get("checkpoint", "best"))
        use_tta = bool(loaded.stage1.get("tta", False)) if tta is None else tta
        embeddings, logits = compute_features(stage1, Path(cache_dir), sorted_rows, tta=use_tta,
                                              batch_size=batch_size, progress=progress)
        probs = sequence_probabilities(loaded.model, sorted_rows["series_instance_uid"].astype(str).to_numpy(),  # type: ignore[arg-type]
                                       embeddings, logits)
    else:
        probs = _cnn_lstm_probabilities(loaded, Path(cache_dir), sorted_rows)
    result = np.empty_like(probs)
    result[order] = probs
    return result


def _cnn_lstm_probabilities(loaded: LoadedSequenceModel, cache_dir: Path, slices: pd.DataFrame) -> np.ndarray:
    """Whole-series CNN-LSTM probabilities for rows sorted by series and slice_index."""
    from ichscan.data.dataset import SeriesDataset, collate_series

    dataset = SeriesDataset(cache_dir, slices, size=loaded.config.data.size)
    probs = np.zeros((len(slices), N_LABELS), dtype=np.float32)
    with torch.inference_mode():
        for item in dataset:
            batch = collate_series([item])
            logits, _ = loaded.module.series_logits(batch, train=False)
            probs[batch["index"][batch["mask"]].numpy()] = torch.sigmoid(logits[batch["mask"]].float()).numpy()
    return probs

