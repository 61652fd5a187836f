"""ExperimentConfig: validation names the key, overrides, smoke, every shipped YAML validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ichscan.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    dump_config,
    load_config,
    smoke,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [p for p in sorted((REPO / "configs").rglob("*.yaml")) if p.parent.name not in ("stage2", "pretrain")]  # stage-1 configs; tests/test_configs.py checks the others


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return path


def test_defaults_round_trip_through_yaml(tmp_path: Path) -> None:
    config = ExperimentConfig()
    again = load_config(write(tmp_path, dump_config(config)))
    assert again == config
    assert config.data.in_chans == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("trainer:\n  epoch: 3\n", "trainer.epoch: Extra inputs are not permitted"),
        ("model:\n  backbone: resnet18\n  dropout: 0.2\n", "model.dropout: Extra inputs"),
        ("augment:\n  affine:\n    degree: 10\n", "augment.affine.degree: Extra inputs"),
        ("trainer:\n  epochs: 0\n", "trainer.epochs: Input should be greater than or equal to 1"),
        ("trainer:\n  precision: bf16\n", "trainer.precision: Input should be 'auto', '32', 'bf16-mixed' or '16-mixed'"),
        ("data:\n  windows: [brain, lung]\n", "data.windows: unknown window 'lung'"),
        ("model:\n  backbone: resnet19\n", "model.backbone: unknown backbone 'resnet19'"),
        ("sampler:\n  name: uniform\n", "sampler.name: unknown sampler 'uniform'"),
        ("data:\n  fold: 5\n", "data.fold=5 but data.split.n_folds=5"),
        ("optimizer:\n  switch_to: rmsprop\n", "switch_to and switch_after go together"),
        ("model:\n  pretrained: true\n", "pretrained=true needs weights_path"),
        ("model:\n  global_pool: sum\n", "model.global_pool: Input should be 'avg', 'max', 'avgmax' or 'catavgmax'"),
        ("data:\n  labels: [any, bleeding]\n", "data.labels.1: Input should be 'any'"),
        ("loss:\n  name: dice\n", "loss: unknown loss 'dice'"),
        ("loss:\n  name: asymmetric\n  params: {gamma: 2}\n", "loss: loss 'asymmetric' has no parameter(s) ['gamma']"),
        ("optimizer:\n  name: lion\n", "optimizer.name: unknown optimizer 'lion'"),
        ("scheduler:\n  name: step\n", "scheduler: scheduler 'step' needs parameter(s) ['step_size']"),
        ("scheduler:\n  name: plateau\n  params: {patience: 2, decay: 3}\n", "has no parameter(s) ['decay']"),
    ],
)
def test_errors_name_file_key_and_reason(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_several_errors_are_reported_together(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "trainer:\n  epochs: -1\n  batchsize: 4\n"))
    assert "trainer.epochs" in str(info.value) and "trainer.batchsize" in str(info.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d"):
        load_config(write(tmp_path, "trainer:\n  epochs: [1\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_overrides_parse_yaml_values_and_reach_nested_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "name: base\ntrainer:\n  epochs: 5\n")
    config = load_config(path, [
        "trainer.epochs=7", "data.windows=[brain, 80/80]", "data.offsets=[-1,0,1]",
        "model.weights_path=null", "loss.name=asymmetric", "loss.params.gamma_neg=4", "augment.affine.p=0.5", "name=other",
    ])
    assert config.trainer.epochs == 7
    assert config.data.windows == ("brain", "80/80")
    assert config.data.offsets == (-1, 0, 1)
    assert config.data.in_chans == 6
    assert config.loss.params == {"gamma_neg": 4}
    assert config.augment.affine.p == 0.5
    assert config.name == "other"


def test_override_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "name: base\n")
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(path, ["trainer.epochs"])
    with pytest.raises(ConfigError, match="name is a value, not a section"):
        load_config(path, ["name.first=x"])
    with pytest.raises(ConfigError, match="trainer.epochz: Extra inputs"):
        load_config(path, ["trainer.epochz=3"])
    assert apply_overrides({"a": {"b": 1}}, ["a.b=2"]) == {"a": {"b": 2}}


def test_labels_are_put_in_canonical_order() -> None:
    config = ExperimentConfig.model_validate({"data": {"labels": ["subdural", "any"]}})
    assert config.data.labels == ("any", "subdural")


def test_smoke_shrinks_the_work_but_keeps_the_methods() -> None:
    config = ExperimentConfig.model_validate({
        "name": "big",
        "data": {"size": 512, "windows": ["brain"], "offsets": [-1, 0, 1]},
        "model": {"backbone": "inception_v3"},
        "optimizer": {"name": "sgd", "lr": 0.1, "switch_to": "rmsprop", "switch_after": 10},
        "trainer": {"epochs": 100, "batch_size": 48, "precision": "bf16-mixed", "devices": 2,
                    "strategy": "ddp", "compile": True, "early_stopping_patience": 3},
    })
    small = smoke(config)
    assert small.data.size == 75  # Inception-v3's minimum input, above the smoke size 64
    assert small.trainer.epochs == 1 and small.trainer.batch_size == 4
    assert small.trainer.limit_train_batches == 2 and small.trainer.limit_val_batches == 1
    assert small.trainer.precision == "32" and small.trainer.devices == 1 and small.trainer.strategy == "auto"
    assert not small.trainer.compile and small.trainer.early_stopping_patience is None
    assert small.optimizer == config.optimizer and small.loss == config.loss and small.augment == config.augment
    assert small.model == config.model and small.data.offsets == (-1, 0, 1) and small.data.windows == ("brain",)
    assert small.name == "big-smoke"
    assert config.trainer.epochs == 100  # the original is untouched
    ExperimentConfig.model_validate(small.model_dump())  # still valid


def test_run_dir_layout() -> None:
    config = ExperimentConfig.model_validate({"name": "demo", "output_dir": "runs"})
    assert config.run_dir() == Path("runs/demo/fold0")
    assert config.run_dir(3) == Path("runs/demo/fold3")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.relative_to(REPO / "configs").as_posix() for p in SHIPPED])
def test_shipped_configs_validate(path: Path) -> None:
    config = load_config(path)
    raw = yaml.safe_load(path.read_text())
    assert raw["name"] == config.name
    assert config.data.cache_dir == Path("data/cache")


def test_global_pool_reaches_the_network() -> None:
    from ichscan.train.module import build_model

    config = ExperimentConfig.model_validate({"model": {"backbone": "resnet18_half", "global_pool": "max"}})
    model = build_model(config)
    assert model.global_pool.pool_type == "max"
    assert model.layer1[0].conv1.out_channels == 32
    assert build_model(ExperimentConfig()).global_pool.pool_type == "avg"
