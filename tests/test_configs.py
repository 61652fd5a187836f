"""Every YAML under configs/ is a valid config of the command its comment names.

A misspelt key or a value out of range in a shipped config would greet a new user with an error
on the first command they copy from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _loader(path: Path):
    if path.parent.name == "stage2":
        from ichscan.train.sequence import load_sequence_config

        return load_sequence_config
    if path.parent.name == "pretrain":
        from ichscan.train.pretrain import load_pretrain_config

        return load_pretrain_config
    from ichscan.config import load_config

    return load_config


ALL = sorted(CONFIGS.rglob("*.yaml"))


def test_configs_cover_every_kind_of_run() -> None:
    names = {str(p.relative_to(CONFIGS)) for p in ALL}
    assert {"demo.yaml", "stage2/bilstm.yaml", "stage2/bigru.yaml", "stage2/conv1d.yaml",
            "stage2/cnn_lstm.yaml", "pretrain/simclr.yaml", "recipes/stage2/seed002_lstm.yaml"} <= names


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_validates(path: Path) -> None:
    config = _loader(path)(path)  # raises ConfigError naming the file and the key
    expected = {"stage2": "SequenceConfig", "pretrain": "PretrainConfig"}.get(path.parent.name, "ExperimentConfig")
    assert type(config).__name__ == expected
    assert config.name and config.output_dir


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_comments_stay_inside_the_repository(path: Path) -> None:
    text = path.read_text()
    assert "/work/" not in text and "../shared" not in text and "seeds/" not in text
