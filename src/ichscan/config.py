"""Typed, validated experiment configuration: one YAML file per training run.

Every section is a pydantic model with ``extra="forbid"``, so a misspelt key is an error naming
its dotted path (``trainer.epoch: extra inputs are not permitted``) instead of a silently ignored
setting. ``load_config`` reads YAML, applies ``key=value`` overrides, and reports every problem on
one line prefixed by the file name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ichscan.data.augment import AugmentConfig
from ichscan.labels import LABELS

__all__ = [
    "ConfigError",
    "DataConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SamplerConfig",
    "SchedulerConfig",
    "SplitConfig",
    "TrainerConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
    "smoke",
]

Label = Literal["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, the key and the reason."""


class Section(BaseModel):
    """Base of every config section (stage 1, stage 2, SimCLR): unknown keys are errors,
    assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitConfig(Section):
    """How labelled slices are divided into folds (``ichscan.data.splits.assign_folds``)."""

    method: Literal["random", "patient", "stratified", "patient_stratified"] = "patient"
    n_folds: int = Field(5, ge=2, description="number of folds; the validation share is 1/n_folds")
    seed: int = 0
    group: Literal["patient_id", "study_instance_uid"] = Field(
        "patient_id", description="what the grouped methods keep whole (patient_id: no patient in two folds)"
    )


class DataConfig(Section):
    """Where the Hounsfield cache is and how slices become network inputs."""

    cache_dir: Path = Path("data/cache")
    size: int | None = Field(
        None, ge=16,
        description="network input side in pixels (default: the cache's); when it differs from the cache, "
        "the cache's own OpenCV resize is applied again on the CPU (ichscan.data.contract.to_input_grid)",
    )
    windows: tuple[str, ...] = ("brain", "subdural", "soft")
    offsets: tuple[int, ...] = (0,)
    normalize: Literal["fixed", "minmax"] = "fixed"
    split: SplitConfig = Field(default_factory=SplitConfig)
    fold: int = Field(0, ge=0, description="validation fold when none is given on the command line")
    subset_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="multilabel-stratified share of labelled slices kept (seed 003: 0.1)"
    )
    subset_seed: int = 0
    labels: tuple[Label, ...] = Field(
        LABELS, min_length=1, description="labels that enter the loss; the others are masked out"
    )

    @field_validator("windows")
    @classmethod
    def _known_windows(cls, windows: tuple[str, ...]) -> tuple[str, ...]:
        from ichscan.data.windows import Window

        if not windows:
            raise ValueError("at least one window is needed")
        for window in windows:
            Window.parse(window)  # a name of WINDOWS or "centre/width"; raises naming the window
        return windows

    @field_validator("offsets")
    @classmethod
    def _has_offsets(cls, offsets: tuple[int, ...]) -> tuple[int, ...]:
        if not offsets:
            raise ValueError("at least one slice offset is needed (0 = the slice itself)")
        return offsets

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels repeat: {list(labels)}")
        return tuple(label for label in LABELS if label in labels)  # canonical order

    @property
    def in_chans(self) -> int:
        """Network input channels: one per (offset, window) pair."""
        return len(self.windows) * len(self.offsets)


class ModelConfig(Section):
    """The timm backbone (``ichscan.models.create_model``)."""

    backbone: str = "resnet18"
    pretrained: bool = False
    weights_path: Path | None = None
    drop_rate: float = Field(0.0, ge=0.0, lt=1.0)
    # timm's pooling before the classifier: "max" lets a few lesion pixels decide a slice, where
    # "avg" dilutes them by the whole feature map; None keeps the backbone's own (average).
    global_pool: Literal["avg", "max", "avgmax", "catavgmax"] | None = None

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, backbone: str) -> str:
        from ichscan.models import resolve_backbone

        resolve_backbone(backbone)  # raises naming the backbone and the closest known names
        return backbone

    @model_validator(mode="after")
    def _weights_for_pretrained(self) -> ModelConfig:
        if self.pretrained and self.weights_path is None:
            raise ValueError("pretrained=true needs weights_path (a local weights file): nothing is downloaded")
        return self

    @property
    def min_size(self) -> int:
        """Smallest input side the backbone accepts (e.g. 75 for Inception-v3)."""
        from ichscan.models import BACKBONES

        spec = BACKBONES.get(self.backbone)
        return spec.min_size if spec is not None else 32


class LossConfig(Section):
    """``ichscan.train.create_loss(name, **params)``."""

    name: str = "bce"
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _known_loss(self) -> LossConfig:
        import inspect

        from ichscan.train.losses import LOSSES

        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; known: {', '.join(LOSSES)}")
        accepted = set(inspect.signature(LOSSES[self.name]).parameters)
        unknown = sorted(set(self.params) - accepted)
        if unknown:
            raise ValueError(f"loss {self.name!r} has no parameter(s) {unknown}; it takes {sorted(accepted)}")
        return self


class SamplerConfig(Section):
    """``ichscan.data.samplers.create_sampler(name, labels, **params)``; ``shuffle`` is plain shuffling."""

    name: str = "shuffle"
    params: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_sampler(cls, name: str) -> str:
        from ichscan.data.samplers import SAMPLERS

        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")
        return name


class OptimizerConfig(Section):
    """``ichscan.train.create_optimizer``; optionally switch to another optimiser after N epochs (seed 001)."""

    name: str = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD/RMSprop momentum")
    betas: tuple[float, float] = (0.9, 0.999)
    switch_to: str | None = None
    switch_after: int | None = Field(None, ge=1, description="epochs trained before switching")
    switch_lr: float | None = Field(None, gt=0.0, description="learning rate after the switch (default: lr)")

    @field_validator("name", "switch_to")
    @classmethod
    def _known_optimizer(cls, name: str | None) -> str | None:
        from ichscan.train.optim import OPTIMIZERS

        if name is not None and name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
        return name

    @model_validator(mode="after")
    def _switch_complete(self) -> OptimizerConfig:
        if (self.switch_to is None) != (self.switch_after is None):
            raise ValueError("switch_to and switch_after go together: give both or neither")
        return self


class SchedulerConfig(Section):
    """``ichscan.train.create_scheduler(name, optimizer, **params)``; ``none`` keeps the rate constant."""

    name: str = "none"
    params: dict[str, Any] = {}
    interval: Literal["epoch", "step"] = Field("epoch", description="step the schedule per epoch or per batch")

    @model_validator(mode="after")
    def _known_scheduler(self) -> SchedulerConfig:
        import inspect

        from ichscan.train.optim import SCHEDULERS

        if self.name == "none":
            if self.params:
                raise ValueError(f"scheduler 'none' takes no params, got {sorted(self.params)}")
            return self
        if self.name not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.name!r}; known: none, {', '.join(SCHEDULERS)}")
        parameters = inspect.signature(SCHEDULERS[self.name]).parameters
        accepted = set(parameters) - {"optimizer"}
        unknown = sorted(set(self.params) - accepted)
        if unknown:
            raise ValueError(f"scheduler {self.name!r} has no parameter(s) {unknown}; it takes {sorted(accepted)}")
        required = sorted(name for name, p in parameters.items()
                          if p.default is inspect.Parameter.empty and name != "optimizer" and name not in self.params)
        if required:
            raise ValueError(f"scheduler {self.name!r} needs parameter(s) {required}")
        return self


class TrainerConfig(Section):
    """Lightning ``Trainer`` settings and the speed switches."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    eval_batch_size: int | None = Field(None, ge=1, description="default: 2 x batch_size")
    num_workers: int = Field(2, ge=0)
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "32", description='"auto": bf16-mixed where the device computes bf16 natively, else 32'
    )
    accelerator: str = "auto"
    devices: int | str = "auto"
    strategy: str = "auto"
    num_nodes: int = Field(1, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    limit_train_batches: int | float | None = Field(None, gt=0, description="batches per epoch (int) or share")
    limit_val_batches: int | float | None = Field(None, gt=0)
    gradient_clip_val: float | None = Field(None, gt=0.0)
    accumulate_grad_batches: int = Field(1, ge=1)
    progress_bar: bool = True


class ExperimentConfig(Section):
    """One training experiment: data, model, loss, sampling, augmentation, optimisation, trainer."""

    name: str = Field("experiment", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)
    output_dir: Path = Path("runs")

    @model_validator(mode="after")
    def _fold_in_range(self) -> ExperimentConfig:
        if self.data.fold >= self.data.split.n_folds:
            raise ValueError(f"data.fold={self.data.fold} but data.split.n_folds={self.data.split.n_folds}")
        return self

    def run_dir(self, fold: int | None = None) -> Path:
        """``output_dir/name/fold<k>``: where a run of this config and fold lives."""
        return self.output_dir / self.name / f"fold{self.data.fold if fold is None else fold}"


def format_errors(error: ValidationError) -> str:
    """A pydantic error as one line: ``dotted.key: reason; …`` (the one formatter of every config)."""
    return _format_errors(error)


def _format_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "<root>"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {message}")
    return "; ".join(parts)


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Return a copy of ``raw`` with dotted ``key=value`` overrides applied (values parsed as YAML).

    ``trainer.epochs=3`` sets an int, ``data.windows=[brain,soft]`` a list, ``model.weights_path=null``
    None. Unknown keys are left for validation to reject with their full path.
    """
    result: dict[str, Any] = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for override in overrides:
        key, sep, text = override.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {override!r}: expected key=value, e.g. trainer.epochs=3")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {override!r}: value is not valid YAML ({exc.__class__.__name__})") from exc
        node = result
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise ConfigError(f"override {override!r}: {prefix} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return result


ConfigT = TypeVar("ConfigT", bound=BaseModel)


def load_yaml_config(
    path: str | Path, config_type: type[ConfigT], overrides: Sequence[str] = ()
) -> ConfigT:
    """Read a YAML file, apply dotted ``key=value`` overrides and validate it as `config_type`.

    Every failure is one ``ConfigError`` naming the file, the key and the reason. Stage-1, stage-2
    and SimCLR configs all load through here.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{path}: not valid YAML{line}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    try:
        merged = apply_overrides(raw, list(overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        return config_type.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_format_errors(exc)}") from exc


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read and validate a YAML experiment config; raise ``ConfigError`` naming file, key and reason."""
    return load_yaml_config(path, ExperimentConfig, overrides)


def config_from_dict(
    raw: dict[str, Any], source: str = "<config>", config_type: type[ConfigT] = ExperimentConfig  # type: ignore[assignment]
) -> ConfigT:
    """Validate a plain dict (e.g. from a checkpoint) as `config_type` with the same one-line
    errors as ``load_config``."""
    try:
        return config_type.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_format_errors(exc)}") from exc


def dump_config(config: ExperimentConfig) -> str:
    """The resolved config as YAML text (paths as strings, every default written out)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


SMOKE_SIZE = 64
SMOKE_BATCH = 4


def smoke(config: ExperimentConfig) -> ExperimentConfig:
    """A copy shrunk to run in well under a minute on CPU, keeping the recipe's methods.

    Backbone, windows, offsets, loss, sampler, augmentation, optimiser and scheduler stay as
    configured, so a smoke run builds and steps exactly the recipe's objects; only the amount of
    work shrinks: 64 px inputs (the backbone's minimum when larger, 75 for Inception-v3), batches of
    4, one epoch of two batches, one validation batch, float32, one CPU process, no compile, no
    early stopping, no workers. Large backbones (VGG-16's 138 M parameters) are kept as named: at
    64 px and 4 images a step takes a second; the checkpoint writes dominate.
    """
    data = config.data.model_copy(update={"size": max(SMOKE_SIZE, config.model.min_size)})
    trainer = config.trainer.model_copy(
        update={
            "epochs": 1,
            "batch_size": SMOKE_BATCH,
            "eval_batch_size": SMOKE_BATCH,
            "num_workers": 0,
            "precision": "32",
            "accelerator": "cpu",
            "devices": 1,
            "strategy": "auto",
            "num_nodes": 1,
            "early_stopping_patience": None,
            "compile": False,
            "limit_train_batches": 2,
            "limit_val_batches": 1,
            "accumulate_grad_batches": 1,
        }
    )
    return config.model_copy(update={"name": f"{config.name}-smoke", "data": data, "trainer": trainer})
