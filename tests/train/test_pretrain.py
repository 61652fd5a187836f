"""SimCLR pre-training on the tiny HU cache of conftest.py; its backbone initialises a classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ichscan.config import ConfigError
from ichscan.models.simclr import nt_xent_loss
from ichscan.train.pretrain import (
    PretrainConfig,
    SimCLRModule,
    load_pretrain_config,
    load_simclr_backbone,
    pretrain,
)

torch.set_num_threads(1)


def tiny_config(cache: Path, out: Path) -> PretrainConfig:
    """A resnet18 SimCLR run on the `tiny_cache` of conftest.py (10 series × 8 slices, 32 px)."""
    raw: dict[str, object] = {
        "name": "simclr",
        "data": {"cache_dir": str(cache), "windows": ["brain", "subdural"], "offsets": [0]},
        "model": {"backbone": "resnet18"},
        "projection_hidden": 16,
        "projection_dim": 8,
        "trainer": {"epochs": 2, "batch_size": 8, "limit_train_batches": 2, "num_workers": 0, "progress_bar": False,
                    "accelerator": "cpu", "devices": 1},
        "output_dir": str(out),
    }
    return PretrainConfig.model_validate(raw)


def test_views_differ_and_loss_is_finite(tiny_cache: Path, tmp_path: Path) -> None:
    module = SimCLRModule(tiny_config(tiny_cache, tmp_path))
    hu = torch.from_numpy(np.load(next((tiny_cache / "series").glob("*.npy"))))[:, None]
    first, second = module.views(hu)
    assert first.shape == (8, 2, 32, 32)
    assert not torch.equal(first, second)
    loss = nt_xent_loss(module.model(first), module.model(second), module.config.temperature)
    assert torch.isfinite(loss) and loss > 0


def test_pretrain_writes_backbone_that_initialises_a_classifier(tiny_cache: Path, tmp_path: Path) -> None:
    run_dir = pretrain(tiny_config(tiny_cache, tmp_path / "runs"))
    for name in ("config.yaml", "metrics.csv", "checkpoints/last.ckpt", "backbone.pt", "backbone.json", "train.log"):
        assert (run_dir / name).is_file(), name
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(metrics) == 2 and np.isfinite(metrics["simclr_loss"]).all()

    saved = torch.load(run_dir / "backbone.pt", weights_only=True)
    assert "fc.weight" not in saved and "conv1.weight" in saved
    model = load_simclr_backbone(run_dir, num_classes=6)
    torch.testing.assert_close(model.state_dict()["layer4.1.conv2.weight"], saved["layer4.1.conv2.weight"])
    assert model.fc.out_features == 6
    with pytest.raises(ValueError, match="backbone.json: missing"):
        load_simclr_backbone(tmp_path)


def test_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("temperature: 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="p.yaml: temperature"):
        load_pretrain_config(path)
    path.write_text("temprature: 0.2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="temprature: Extra inputs"):
        load_pretrain_config(path)
    path.write_text("name: s1\n", encoding="utf-8")
    assert load_pretrain_config(path, ["temperature=0.5"]).temperature == 0.5
