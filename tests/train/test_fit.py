"""fit / load_model on a tiny cache: the run directory, best checkpoint, OOF, resume, optimiser switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import log_loss, roc_auc_score

from ichscan.config import ExperimentConfig, load_config
from ichscan.labels import LABELS
from ichscan.train import RunError, fit, load_model, read_run_config

BRAIN, SUBDURAL = (40.0, 80.0), (80.0, 200.0)


def tiny_config(cache: Path, out: Path, name: str = "tiny", **trainer: object) -> ExperimentConfig:
    return ExperimentConfig.model_validate({
        "name": name,
        "data": {"cache_dir": str(cache), "windows": ["brain", "subdural"], "offsets": [-1, 0],
                 "split": {"method": "patient", "n_folds": 5, "seed": 0}},
        "model": {"backbone": "resnet18"},
        "loss": {"name": "rsna"},
        "augment": {"hflip": 0.5},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "scheduler": {"name": "step", "params": {"step_size": 1, "gamma": 0.5}},
        "trainer": {"epochs": 3, "batch_size": 16, "num_workers": 0, "progress_bar": False, "seed": 1,
                    **trainer},
        "output_dir": str(out),
    })


@pytest.fixture(scope="module")
def trained(tiny_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ExperimentConfig, Path]:
    config = tiny_config(tiny_cache, tmp_path_factory.mktemp("runs"))
    return config, fit(config)


def test_run_directory_holds_every_artefact(trained: tuple[ExperimentConfig, Path]) -> None:
    config, run_dir = trained
    assert run_dir == config.output_dir / "tiny" / "fold0"
    for name in ("config.yaml", "metrics.csv", "oof.parquet", "train.log",
                 "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert read_run_config(run_dir) == config
    log = (run_dir / "train.log").read_text()
    assert "epoch 2:" in log
    assert "precision 32-true (trainer.precision 32)" in log  # what ran, not only what was asked
    assert "Tip:" not in log and "litmodels" not in log  # no Lightning advert
    # the operating point of the fold (and of the run folder, pooled over its one fold) from oof.parquet
    from ichscan.train.operating_point import OperatingPointError, operating_point_of, read_operating_point

    try:
        expected = operating_point_of([run_dir])
    except OperatingPointError:
        expected = None
    assert read_operating_point(run_dir) == expected and read_operating_point(run_dir.parent) == expected
    assert not list(run_dir.rglob("*.tmp*"))  # every atomic write was renamed into place


def test_metrics_one_row_per_epoch_and_training_learns(trained: tuple[ExperimentConfig, Path]) -> None:
    _, run_dir = trained
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1, 2]
    assert metrics["step"].tolist() == [4, 8, 12]  # 64 training slices / 16, last batch dropped only if partial
    assert metrics["lr"].tolist() == pytest.approx([1e-3, 5e-4, 2.5e-4])  # the rate each epoch trained with
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    expected = {"lr", "train_loss", "val_loss", "val_wll", "val_auc_any", "val_auc_mean", "epoch_time_s"}
    assert expected <= set(metrics.columns)
    assert metrics["val_auc_any"].notna().all()


def test_best_checkpoint_is_the_min_val_loss_epoch_and_oof_matches_it(
    trained: tuple[ExperimentConfig, Path], tiny_cache: Path
) -> None:
    config, run_dir = trained
    metrics = pd.read_csv(run_dir / "metrics.csv")
    best_epoch = int(metrics.loc[metrics["val_wll"].idxmin(), "epoch"])
    best = torch.load(run_dir / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    last = torch.load(run_dir / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert best["global_step"] == 4 * (best_epoch + 1)  # saved at the end of the best epoch
    assert last["global_step"] == 12 and "optimizer_states" in last and "optimizer_states" not in best

    oof = pd.read_parquet(run_dir / "oof.parquet")
    slices = pd.read_parquet(tiny_cache / "slices.parquet").set_index("image_id")
    assert oof["image_id"].is_unique and (oof["fold"] == 0).all()
    # the validation fold is whole patients, disjoint from training, with their true labels
    truth = slices.loc[oof["image_id"], list(LABELS)].to_numpy()
    np.testing.assert_array_equal(oof[[f"label_{k}" for k in LABELS]].to_numpy(), truth)
    # RSNA weighted log loss of the OOF probabilities, recomputed with scikit-learn, is the best row
    probs = oof[list(LABELS)].to_numpy(dtype=np.float64)
    per_label = [log_loss(truth[:, k], np.clip(probs[:, k], 1e-7, 1 - 1e-7), labels=[0, 1]) for k in range(6)]
    wll = (2 * per_label[0] + sum(per_label[1:])) / 7
    assert wll == pytest.approx(metrics["val_wll"].min(), abs=2e-4)
    best_row = metrics.loc[metrics["val_wll"].idxmin()]
    assert roc_auc_score(truth[:, 0], probs[:, 0]) == pytest.approx(best_row["val_auc_any"], abs=1e-3)


def window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    low = center - width / 2
    return np.clip((hu.astype(np.float64) - low) / width, 0.0, 1.0)


def test_load_model_reproduces_oof_from_raw_volumes(trained: tuple[ExperimentConfig, Path], tiny_cache: Path) -> None:
    config, run_dir = trained
    loaded = load_model(run_dir)
    assert loaded.config == config and loaded.size == 32 and not loaded.model.training  # the cache's side
    assert loaded.channel_spec.offsets == (-1, 0)
    oof = pd.read_parquet(run_dir / "oof.parquet")
    # inputs built by hand: neighbour s-1 clamped at the series start, channel order offset-major
    stacks = []
    for uid, z in zip(oof["series_instance_uid"], oof["slice_index"]):
        volume = np.load(tiny_cache / "series" / f"{uid}.npy")
        prev, cur = volume[max(z - 1, 0)], volume[z]
        stacks.append([window(prev, *BRAIN), window(prev, *SUBDURAL), window(cur, *BRAIN), window(cur, *SUBDURAL)])
    x = torch.tensor(np.array(stacks), dtype=torch.float32)
    with torch.no_grad():
        probs = torch.sigmoid(loaded.model(x)).numpy()
    np.testing.assert_allclose(probs, oof[list(LABELS)].to_numpy(), atol=1e-4)


def test_the_run_carries_its_input_contract(trained: tuple[ExperimentConfig, Path], tiny_cache: Path) -> None:
    import json

    import cv2

    from ichscan.data.contract import read_contract

    config, run_dir = trained
    stored = json.loads((run_dir / "input.json").read_text())
    meta = json.loads((tiny_cache / "meta.json").read_text())
    assert stored["cache_size"] == meta["size"] == stored["input_size"]  # data.size unset: the cache's own
    assert stored["crop"]["enabled"] == meta["crop"] and stored["cache_version"] == meta["version"]
    assert stored["windows"] == ["brain", "subdural"] and stored["offsets"] == [-1, 0]
    assert stored["labels"] == list(LABELS) and stored["channel_order"] == "offset-major"
    assert stored["opencv_version"] == cv2.__version__ and stored["ichscan_version"]
    assert stored["split"] == {"method": "patient", "n_folds": 5, "seed": 0, "fold": 0, "group": "patient_id"}
    for name in ("best", "last"):  # the same contract travels inside every checkpoint
        checkpoint = torch.load(run_dir / "checkpoints" / f"{name}.ckpt", map_location="cpu", weights_only=True)
        assert checkpoint["ichscan"]["input"] == stored
    # without input.json the checkpoint's copy is used; without both the run is refused in one line
    copy = run_dir.parent / "copy"
    import shutil

    shutil.copytree(run_dir, copy)
    (copy / "input.json").unlink()
    assert load_model(copy).contract == read_contract(run_dir)
    state = torch.load(copy / "checkpoints/best.ckpt", map_location="cpu", weights_only=True)
    del state["ichscan"]["input"]
    torch.save(state, copy / "checkpoints/best.ckpt")
    with pytest.raises(RunError, match=r"copy: no input contract \(input.json\)"):
        load_model(copy)
    # the explicit upgrade writes it back from config.yaml + the cache's meta.json
    from ichscan.train import write_run_contract

    assert write_run_contract(copy) == read_contract(run_dir)
    assert load_model(copy).contract == read_contract(run_dir)
    shutil.rmtree(copy)


def test_load_model_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="best.ckpt: checkpoint not found"):
        load_model(tmp_path)
    bad = tmp_path / "checkpoints" / "best.ckpt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="best.ckpt: cannot read checkpoint"):
        load_model(tmp_path)


def test_existing_run_is_not_overwritten(trained: tuple[ExperimentConfig, Path]) -> None:
    config, run_dir = trained
    with pytest.raises(RunError, match="already holds a trained run"):
        fit(config)
    changed = config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"lr": 0.5})})
    with pytest.raises(RunError, match="changed: optimizer.lr"):
        fit(changed, resume=True)


def test_resume_continues_from_the_last_epoch(tiny_cache: Path, tmp_path: Path) -> None:
    short = tiny_config(tiny_cache, tmp_path, name="resumed", epochs=1)
    with pytest.raises(RunError, match="no checkpoint to resume from"):
        fit(short, resume=True)
    run_dir = fit(short)
    first = pd.read_csv(run_dir / "metrics.csv")
    longer = tiny_config(tiny_cache, tmp_path, name="resumed", epochs=3)
    assert fit(longer, resume=True) == run_dir
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["epoch"].tolist() == [0, 1, 2]
    assert metrics["step"].tolist() == [4, 8, 12]  # the global step continues, epoch 0 is not redone
    pd.testing.assert_series_equal(metrics["val_wll"].iloc[:1], first["val_wll"])
    assert torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)["global_step"] == 12
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["trainer"]["epochs"] == 3


def test_sgd_switches_to_rmsprop_and_survives_resume(tiny_cache: Path, tmp_path: Path) -> None:
    def config(epochs: int) -> ExperimentConfig:
        base = tiny_config(tiny_cache, tmp_path, name="switch", epochs=epochs, limit_train_batches=1,
                           limit_val_batches=1)
        optimizer = {"name": "sgd", "lr": 0.01, "momentum": 0.9, "switch_to": "rmsprop", "switch_after": 1,
                     "switch_lr": 0.002}
        return ExperimentConfig.model_validate({**base.model_dump(), "optimizer": optimizer,
                                                "scheduler": {"name": "plateau", "params": {"patience": 5}}})

    run_dir = fit(config(2))
    fit(config(3), resume=True)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert metrics["optimizer"].tolist() == ["SGD", "RMSprop", "RMSprop"]
    assert metrics["lr"].tolist() == pytest.approx([0.01, 0.002, 0.002])
    last = torch.load(run_dir / "checkpoints/last.ckpt", weights_only=True)
    assert "square_avg" in next(iter(last["optimizer_states"][0]["state"].values()))  # RMSprop state kept
    assert len(pd.read_parquet(run_dir / "oof.parquet")) == 16  # the whole fold fits the one validation batch


def test_subset_of_labels_and_weighted_loss_from_counts(tiny_cache: Path, tmp_path: Path) -> None:
    base = tiny_config(tiny_cache, tmp_path, name="anyonly", epochs=1, limit_train_batches=2)
    config = ExperimentConfig.model_validate({
        **base.model_dump(), "data": {**base.data.model_dump(), "labels": ["any"]},
        "loss": {"name": "weighted_bce"}, "sampler": {"name": "oversample", "params": {"multipliers": {"epidural": 8}}},
    })
    run_dir = fit(config)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert np.isfinite(metrics["train_loss"]).all() and np.isfinite(metrics["val_wll"]).all()


def test_demo_config_builds_a_network_that_takes_its_own_input() -> None:
    from ichscan.train.module import build_model

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "demo.yaml")
    assert config.trainer.accelerator in ("cpu", "auto")
    # every (offset, window) pair is one channel: 3 windows on slices s-1, s, s+1 give 9
    assert config.data.in_chans == len(config.data.windows) * len(config.data.offsets)
    model = build_model(config)
    side = config.data.size or 64
    logits = model.eval()(torch.zeros(2, config.data.in_chans, side, side))
    assert logits.shape == (2, len(LABELS)) and torch.isfinite(logits).all()


def test_a_slice_split_is_warned_about(tiny_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ichscan.train import SliceDataModule

    config = tiny_config(tiny_cache, tmp_path)
    split = config.data.split.model_copy(update={"method": "random"})
    config = config.model_copy(update={"data": config.data.model_copy(update={"split": split})})
    with caplog.at_level("WARNING", logger="ichscan"):
        SliceDataModule(config).setup()
    assert "split by slice (random) although 10 patient ids exist" in caplog.text
