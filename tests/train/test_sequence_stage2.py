"""Stage 2 on features: the FEATURES/ layout, series batches, config validation, a real fit, apply."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ichscan.config import ConfigError
from ichscan.labels import LABELS
from ichscan.metrics import weighted_log_loss
from ichscan.train.sequence import (
    SequenceConfig,
    SeriesFeatureDataset,
    SeriesFeatures,
    apply_sequence_model,
    collate_feature_series,
    fit_sequence,
    is_sequence_run,
    load_sequence_config,
    load_sequence_model,
    read_features,
    sequence_config_from_dict,
    write_features,
)

from ichscan.data.contract import InputContract

torch.set_num_threads(1)


def neighbour_features(n_series: int = 30, length: int = 10, dim: int = 6, seed: int = 0) -> SeriesFeatures:
    """Slices are positive (all labels) when the *next* slice carries a mark; stage-1 logits are blind."""
    rng = np.random.default_rng(seed)
    marks = rng.random((n_series, length)) < 0.3
    positive = np.zeros_like(marks)
    positive[:, :-1] = marks[:, 1:]
    embeddings = rng.normal(size=(n_series, length, dim)).astype(np.float32)
    embeddings[..., 0] = marks * 3.0
    rows = pd.DataFrame(
        {
            "image_id": [f"ID_{s:03d}_{z:02d}" for s in range(n_series) for z in range(length)],
            "patient_id": np.repeat([f"P{s:03d}" for s in range(n_series)], length),
            "study_instance_uid": np.repeat([f"1.2.{s}" for s in range(n_series)], length),
            "series_instance_uid": np.repeat([f"1.3.{s:03d}" for s in range(n_series)], length),
            "slice_index": np.tile(np.arange(length, dtype=np.int32), n_series),
        }
    )
    for label in LABELS:
        rows[label] = positive.reshape(-1).astype(np.float32)
    logits = np.zeros((n_series * length, 6), dtype=np.float32)
    contract = InputContract.build(cache_size=32, crop=True, windows=("brain",), offsets=(0,))
    meta = {"version": 1, "run": "/nowhere/stage1", "checkpoint": "best", "tta": False, "dim": dim,
            "input": contract.to_json()}
    return SeriesFeatures(rows, embeddings.reshape(-1, dim), logits, meta)


def test_features_round_trip_and_validation(tmp_path: Path) -> None:
    features = neighbour_features(n_series=3, length=4)
    write_features(features, tmp_path / "features")
    again = read_features(tmp_path / "features")
    np.testing.assert_array_equal(again.embeddings, features.embeddings)
    pd.testing.assert_frame_equal(again.slices, features.slices)
    assert again.meta["run"] == "/nowhere/stage1"
    with pytest.raises(ValueError, match="meta.json: missing"):
        read_features(tmp_path)
    shuffled = SeriesFeatures(features.slices.iloc[::-1].reset_index(drop=True), features.embeddings,
                              features.logits, features.meta)
    write_features(shuffled, tmp_path / "bad")
    with pytest.raises(ValueError, match="not sorted"):
        read_features(tmp_path / "bad")
    with pytest.raises(ValueError, match="features disagree"):
        SeriesFeatures(features.slices, features.embeddings[:3], features.logits, features.meta)


def test_series_dataset_groups_and_pads() -> None:
    features = neighbour_features(n_series=3, length=4)
    dataset = SeriesFeatureDataset(features, rows=np.array([11, 0, 1, 2, 3, 8, 9]))
    assert [item.tolist() for item in dataset.rows] == [[0, 1, 2, 3], [8, 9, 11]]
    batch = collate_feature_series([dataset[1], dataset[0]])
    assert batch["mask"].tolist() == [[True, True, True, False], [True] * 4]
    assert batch["index"][0].tolist() == [8, 9, 11, -1]
    assert torch.isnan(batch["labels"][0, 3]).all()
    torch.testing.assert_close(batch["embeddings"][0, 2], torch.from_numpy(features.embeddings[11]))


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="features: .*required"):
        sequence_config_from_dict({"kind": "two_stage"})
    with pytest.raises(ConfigError, match="data.split.method"):
        sequence_config_from_dict({"features": "f", "data": {"split": {"method": "random"}}})
    path = tmp_path / "seq.yaml"
    path.write_text("features: f\nsequence:\n  name: lstm\n  hiden: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"seq.yaml: sequence.hiden: Extra inputs"):
        load_sequence_config(path)
    path.write_text("features: f\nsequence:\n  name: conv\n", encoding="utf-8")
    config = load_sequence_config(path, ["sequence.hidden=5"])
    assert (config.sequence.name, config.sequence.hidden) == ("conv", 5)


def test_fit_learns_neighbour_rule_and_applies(tmp_path: Path) -> None:
    features = neighbour_features()
    write_features(features, tmp_path / "features")
    config = SequenceConfig.model_validate(
        {
            "name": "seq",
            "features": str(tmp_path / "features"),
            "sequence": {"name": "gru", "hidden": 16, "layers": 1, "dropout": 0.0},
            "optimizer": {"name": "adam", "lr": 0.02},
            "data": {"split": {"method": "patient", "n_folds": 3}},
            "trainer": {"epochs": 12, "batch_size": 8, "progress_bar": False, "accelerator": "cpu",
                        "devices": 1, "num_workers": 0},
            "output_dir": str(tmp_path / "runs"),
        }
    )
    run_dir = fit_sequence(config, fold=1)
    for name in ("config.yaml", "metrics.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "oof.parquet", "train.log", "stage1.json"):
        assert (run_dir / name).is_file(), name
    assert is_sequence_run(run_dir)
    assert json.loads((run_dir / "stage1.json").read_text())["run"] == "/nowhere/stage1"
    # the stage-2 run carries the input contract of the stage-1 network its features came from
    assert json.loads((run_dir / "input.json").read_text()) == features.meta["input"]
    oof = pd.read_parquet(run_dir / "oof.parquet")
    assert set(oof["fold"]) == {1} and len(oof) == 100  # 10 of 30 series
    labels = oof[[f"label_{k}" for k in LABELS]].to_numpy()
    probs = oof[list(LABELS)].to_numpy()
    prior = weighted_log_loss(labels, np.full_like(probs, 0.5))
    assert weighted_log_loss(labels, probs) < 0.5 * prior  # it learned to look at the next slice

    # apply_sequence_model gives the same probabilities whatever the row order.
    loaded = load_sequence_model(run_dir)
    assert loaded.config.sequence.name == "gru"
    predictions = features.slices[["image_id", "series_instance_uid", "slice_index"]].copy()
    predictions[list(LABELS)] = 0.5
    shuffle = np.random.default_rng(1).permutation(len(predictions))
    direct = apply_sequence_model(run_dir, predictions, features.embeddings, features.logits)
    shuffled = apply_sequence_model(run_dir, predictions.iloc[shuffle].reset_index(drop=True),
                                    features.embeddings[shuffle])  # logits recovered from p = 0.5
    np.testing.assert_allclose(shuffled[list(LABELS)].to_numpy(), direct[list(LABELS)].to_numpy()[shuffle],
                               rtol=1e-5, atol=1e-6)
    merged = oof.merge(direct, on="image_id", suffixes=("_oof", ""))
    np.testing.assert_allclose(merged[[f"{k}_oof" for k in LABELS]].to_numpy(),
                               merged[list(LABELS)].to_numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception, match="already holds a trained run"):
        fit_sequence(config, fold=1)


def test_cnn_lstm_end_to_end_fit_and_predict(tiny_cache: Path, tmp_path: Path) -> None:
    from ichscan.prepare import read_slices
    from ichscan.train.sequence import CNNLSTMModule, neighbour_positions, predict_two_stage

    # Neighbour positions clamp inside each series' own length.
    positions = neighbour_positions(torch.tensor([3, 1]), 3, (-1, 0, 1))
    assert positions[0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 2]]
    assert positions[1, 0].tolist() == [0, 0, 0]

    config = SequenceConfig.model_validate(
        {
            "kind": "cnn_lstm",
            "name": "e2e",
            "data": {"cache_dir": str(tiny_cache), "windows": ["brain"], "offsets": [-1, 0, 1],
                     "split": {"method": "patient", "n_folds": 5}},
            "model": {"backbone": "resnet18"},
            "sequence": {"name": "lstm", "hidden": 8, "layers": 1},
            "chunk": 4,
            "trainer": {"epochs": 1, "batch_size": 4, "limit_train_batches": 2, "progress_bar": False,
                        "accelerator": "cpu", "devices": 1, "num_workers": 0},
            "output_dir": str(tmp_path / "runs"),
        }
    )
    run_dir = fit_sequence(config)
    oof = pd.read_parquet(run_dir / "oof.parquet")
    assert len(oof) == 16 and oof[list(LABELS)].notna().all().all()  # 2 of 10 series × 8 slices
    loaded = load_sequence_model(run_dir)
    assert isinstance(loaded.module, CNNLSTMModule)
    slices = read_slices(tiny_cache)
    val = slices[slices["image_id"].isin(oof["image_id"])].iloc[::-1]  # any row order
    probs = predict_two_stage(run_dir, tiny_cache, val, progress=False)
    expected = oof.set_index("image_id").loc[val["image_id"], list(LABELS)].to_numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)

    # `ichscan predict` runs a stage-2 run through both stages, on the whole cache.
    from ichscan.predict import predict

    result = predict([run_dir], tiny_cache, tmp_path / "out", progress=False)
    written = pd.read_parquet(tmp_path / "out" / "slices.parquet").set_index("image_id")
    direct = predict_two_stage(run_dir, tiny_cache, slices, progress=False)
    assert len(written) == len(slices) and (tmp_path / "out" / "studies.json").is_file()
    np.testing.assert_allclose(written.loc[slices["image_id"], list(LABELS)].to_numpy(), direct,
                               rtol=1e-4, atol=1e-5)
    assert result.timings["inference"] > 0
    # the run folder (output_dir/name) means the same as its one fold folder
    again = predict([run_dir.parent], tiny_cache, tmp_path / "out-folder", progress=False)
    pd.testing.assert_frame_equal(again.slices, result.slices)
    from run_factory import make_run_dir

    stage1 = make_run_dir(tmp_path / "s1", "s1", windows=("brain",), offsets=(-1, 0, 1))
    with pytest.raises(ValueError, match="cannot be mixed"):
        predict([run_dir, stage1], tiny_cache, tmp_path / "out2", progress=False)
    # Heatmaps need a stage-1 network; an end-to-end CNN-LSTM run records none: a clear refusal.
    from ichscan.train.resolve import RunError

    with pytest.raises(RunError, match="this stage-2 run records no stage-1 run"):
        from ichscan.explain.heatmaps import predict_explained

        predict_explained([run_dir], tiny_cache, tmp_path / "out3", progress=False)
    assert not (tmp_path / "out3").exists()  # refused before any work


def test_cli_commands_fail_with_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ichscan.cli import app

    runner = CliRunner()
    bad = tmp_path / "seq.yaml"
    bad.write_text("kind: two_stage\n", encoding="utf-8")
    for args, reason in (
        (["train-seq", "--config", str(bad)], "features: required"),
        (["pretrain", "--config", str(tmp_path / "missing.yaml")], "missing.yaml: cannot read"),
        (["embed", str(tmp_path / "norun"), "-o", str(tmp_path / "f")], "norun: no such run directory"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert reason in result.output and "Traceback" not in result.output
