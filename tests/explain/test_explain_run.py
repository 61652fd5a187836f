"""`explain_slices` on a one-series cache with a real timm model, and the `explain`/`tsne` CLI errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.config import ExperimentConfig
from ichscan.data.contract import InputContract
from ichscan.explain.run import EXPLANATION_COLUMNS, explain_inputs, explain_slices
from ichscan.labels import LABELS
from ichscan.train.run import LoadedModel

torch.set_num_threads(1)


def one_series_cache(root: Path, depth: int = 3, size: int = 32) -> pd.DataFrame:
    """CACHE/series/<uid>.npy and the rows that name its slices (only what explain reads)."""
    (root / "series").mkdir(parents=True)
    volume = np.full((depth, size, size), 30, dtype=np.int16)
    volume[:, 10:16, 12:20] = 80
    np.save(root / "series" / "1.2.3.npy", volume)
    return pd.DataFrame({
        "image_id": [f"ID_{z:04d}" for z in range(depth)],
        "study_instance_uid": "1.2", "series_instance_uid": "1.2.3",
        "slice_index": np.arange(depth, dtype=np.int32),
    })


def test_explain_slices_writes_one_png_per_predicted_class(tmp_path: Path) -> None:
    torch.manual_seed(0)
    slices = one_series_cache(tmp_path / "cache")
    model = timm.create_model("resnet18", num_classes=6, in_chans=3).eval()
    with torch.no_grad():  # make every class "present" for slice logits: bias +5 on any and subdural
        model.fc.bias.copy_(torch.tensor([5.0, -5.0, -5.0, -5.0, -5.0, 5.0]))
    contract = InputContract.build(cache_size=32, crop=True, windows=("brain",), offsets=(-1, 0, 1))
    loaded = LoadedModel(model=model, config=ExperimentConfig(), contract=contract,
                         checkpoint=tmp_path / "none.ckpt")
    table = explain_slices(loaded, tmp_path / "cache", slices.iloc[[2]], tmp_path / "out", progress=False)
    assert list(table.columns) == list(EXPLANATION_COLUMNS)
    assert table[["image_id", "label"]].values.tolist() == [["ID_0002", "any"], ["ID_0002", "subdural"]]
    for path in table["path"]:
        assert Path(path).read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "explanations.csv").is_file()
    assert table["probability"].gt(0.99).all()
    assert table["gradcam_peak_y"].between(0, 31).all()


def test_explain_inputs_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown explanation method"):
        explain_inputs(torch.nn.Identity(), torch.zeros(1, 1, 4, 4), methods=["lime"])


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["tsne", str(tmp_path / "nothing"), "-o", str(tmp_path / "t.png")])
    assert result.exit_code == 1
    assert "meta.json: missing" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["explain", str(tmp_path / "norun"), str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "norun: no such run directory" in result.output and "Traceback" not in result.output
    (tmp_path / "unfinished" / "fold0").mkdir(parents=True)
    (tmp_path / "unfinished" / "fold0" / "config.yaml").write_text("name: x\n")
    result = runner.invoke(app, ["explain", str(tmp_path / "unfinished"), str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "fold0: not a finished run (no checkpoints/best.ckpt)" in result.output


def test_tsne_cli_writes_png(tmp_path: Path) -> None:
    from ichscan.train.sequence import SeriesFeatures, write_features

    rng = np.random.default_rng(0)
    rows = pd.DataFrame({"image_id": [f"ID_{i}" for i in range(30)], "series_instance_uid": "1.2",
                         "slice_index": np.arange(30, dtype=np.int32)})
    for k, label in enumerate(LABELS):
        rows[label] = np.float32((np.arange(30) % 3 == 0) & (k in (0, 5)))
    write_features(SeriesFeatures(rows, rng.normal(size=(30, 4)).astype(np.float32),
                                  np.zeros((30, 6), np.float32), {"backbone": "resnet18"}), tmp_path / "f")
    result = CliRunner().invoke(app, ["tsne", str(tmp_path / "f"), "-o", str(tmp_path / "t.png"),
                                      "--perplexity", "5"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
