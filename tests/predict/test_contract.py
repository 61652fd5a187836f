"""The input contract end to end: one resize, the same tensor from DICOM and from the training cache."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from run_factory import make_run_dir
from typer.testing import CliRunner

from ichscan.data.contract import InputContract, SliceGeometry, to_input_grid
from ichscan.labels import LABELS
from ichscan.predict import predict

CACHE, INPUT = 32, 24  # the training cache's side and the network's (data.size ≠ cache size)


def test_to_input_grid_is_the_cache_resize_slice_by_slice() -> None:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 2000, size=(2, 3, 32, 32)).astype(np.int16)
    small = to_input_grid(hu, 16)
    assert small.shape == (2, 3, 16, 16) and small.dtype == np.int16
    # a 2× shrink with INTER_AREA is the exact 2×2 block mean (rounded to whole HU)
    block = hu.reshape(2, 3, 16, 2, 16, 2).astype(np.float64).mean(axis=(3, 5))
    np.testing.assert_allclose(small, block, atol=0.5 + 1e-9)
    reference = cv2.resize(hu[1, 2], (16, 16), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(small[1, 2], reference)
    assert to_input_grid(hu, 32) is hu  # already on the grid: untouched


def test_slice_geometry_maps_a_grid_map_back_onto_the_dicom_matrix() -> None:
    # A 20×20 matrix; the head box is rows [-2, 18) × columns [4, 24): it reaches past the top and
    # right edges. The network grid is 10×10, so each grid pixel covers 2×2 matrix pixels.
    geometry = SliceGeometry(y0=-2, y1=18, x0=4, x1=24, rows=20, columns=20)
    grid = np.zeros((10, 10), dtype=np.float32)
    grid[3, 2] = 1.0  # grid pixel (3, 2) = box pixels rows 6–7, cols 4–5 = matrix rows 4–5, cols 8–9
    mapped = geometry.to_dicom(grid)
    assert mapped.shape == (20, 20)
    peak = np.argwhere(mapped == mapped.max())
    assert {tuple(p) for p in peak} == {(4, 8), (4, 9), (5, 8), (5, 9)}
    assert mapped[:, :4].max() == 0.0  # left of the box: the network never saw it
    # the forward map sends those matrix pixel centres to the grid pixel's centre (3, 2) ± ¼
    assert geometry.to_grid_point(4.5, 8.5, 10) == pytest.approx((3.0, 2.0))
    # a constant map is constant inside the box (rows 0–17, columns 4–19) and 0 outside it
    flat = geometry.to_dicom(np.ones((10, 10)))
    assert flat[0:18, 4:20].min() == pytest.approx(1.0) and flat[18:, :].max() == 0.0


@pytest.fixture()
def trained_on_dicom(dicom_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A run whose contract says: cache 32² with crop, network input 24²; and its training cache,
    prepared from `dicom_folder` exactly as `ichscan index` + `ichscan prepare --size 32` do."""
    from ichscan.dicom import index_folder
    from ichscan.prepare import prepare_cache

    indexed = index_folder(dicom_folder, workers=1, progress=False)
    cache = tmp_path / "train-cache"
    prepare_cache(indexed.manifest, cache, size=CACHE, crop=True, workers=1, progress=False)
    run = make_run_dir(tmp_path, "contract", size=INPUT, cache_size=CACHE, offsets=(-1, 0, 1), seed=3)
    return run, cache


def test_dicom_folder_and_training_cache_give_the_same_probabilities(
    trained_on_dicom: tuple[Path, Path], dicom_folder: Path, tmp_path: Path
) -> None:
    from ichscan.prepare import read_slices
    from ichscan.train.run import load_model, predict_slices

    run, cache = trained_on_dicom
    common = {"batch_size": 3, "workers": 1, "progress": False, "precision": "fp32"}
    from_dicom = predict([run], dicom_folder, tmp_path / "out-dicom", **common).slices.set_index("image_id")
    from_cache = predict([run], cache, tmp_path / "out-cache", **common).slices.set_index("image_id")
    assert len(from_dicom) == 7
    np.testing.assert_allclose(from_dicom.loc[from_cache.index, list(LABELS)].to_numpy(),
                               from_cache[list(LABELS)].to_numpy(), rtol=0, atol=1e-6)
    # ... and both are what the training data path (SliceDataset(size=24), the OOF loop) computes
    slices = read_slices(cache)
    training_path = predict_slices(load_model(run), cache, slices)
    np.testing.assert_allclose(from_cache.loc[slices["image_id"], list(LABELS)].to_numpy(), training_path,
                               rtol=0, atol=1e-6)


def test_a_cache_made_otherwise_is_refused_and_a_run_without_contract_too(
    trained_on_dicom: tuple[Path, Path], dicom_folder: Path, tmp_path: Path
) -> None:
    from ichscan.dicom import index_folder
    from ichscan.prepare import prepare_cache

    run, _ = trained_on_dicom
    other = tmp_path / "cache-48"
    prepare_cache(index_folder(dicom_folder, workers=1, progress=False).manifest, other, size=48, crop=True,
                  workers=1, progress=False)
    runner = CliRunner()
    from ichscan.cli import app

    result = runner.invoke(app, ["predict", str(other), "--model", str(run), "-o", str(tmp_path / "o"),
                                 "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "cache prepared with size=48, crop=True, spacing=None, but the model was trained on size=32" in result.output
    bare = make_run_dir(tmp_path / "old", "old", size=INPUT, contract=False)
    result = runner.invoke(app, ["predict", str(dicom_folder), "--model", str(bare), "-o", str(tmp_path / "o"),
                                 "--no-progress"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "no input contract (input.json)" in result.output
    # the explicit upgrade: `ichscan contract RUN --write --cache CACHE` writes it from config + cache meta
    cache = tmp_path / "old-cache"
    prepare_cache(index_folder(dicom_folder, workers=1, progress=False).manifest, cache, size=40, crop=True,
                  workers=1, progress=False)
    result = runner.invoke(app, ["contract", str(bare), "--write", "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    written = json.loads((bare / "input.json").read_text())
    assert (written["cache_size"], written["input_size"], written["crop"]["enabled"]) == (40, INPUT, True)
    result = runner.invoke(app, ["predict", str(dicom_folder), "--model", str(bare), "-o", str(tmp_path / "o"),
                                 "--no-progress"])
    assert result.exit_code == 0, result.output


def test_contract_round_trips_and_rejects_a_foreign_label_order() -> None:
    contract = InputContract.build(cache_size=256, crop=True, windows=("brain", "40/380"), offsets=(-1, 0, 1),
                                   input_size=224)
    assert InputContract.from_json(json.loads(json.dumps(contract.to_json()))) == contract
    assert contract.in_chans == 6 and contract.channel_spec.offsets == (-1, 0, 1)
    bad = {**contract.to_json(), "labels": list(reversed(LABELS))}
    with pytest.raises(ValueError, match="x.json: invalid input contract .*label order"):
        InputContract.from_json(bad, "x.json")
    with pytest.raises(ValueError, match="needs an explicit input size"):
        InputContract.build(cache_size=0, crop=False, windows=("brain",), offsets=(0,))


def test_predict_and_explain_take_reference_run_folders_and_fold(
    tiny_cache: tuple[Path, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ichscan.cli import app

    cache, _ = tiny_cache
    folds = [make_run_dir(tmp_path / "ref", "ref", fold=k, seed=40 + k) for k in (0, 1)]
    monkeypatch.setenv("ICHSCAN_REFERENCE_MODEL", str(folds[0].parent))
    runner = CliRunner()
    out = tmp_path / "o"
    result = runner.invoke(app, ["predict", str(cache), "--model", "reference", "--fold", "1", "-o", str(out),
                                 "--no-progress", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "studies.json").read_text())["models"] == ["ref/fold1"]
    result = runner.invoke(app, ["predict", str(cache), "--model", "reference", "-o", str(out), "--no-progress"])
    assert result.exit_code == 0 and json.loads((out / "studies.json").read_text())["models"] == [
        "ref/fold0", "ref/fold1"]
    result = runner.invoke(app, ["explain", "reference", str(cache), "-o", str(tmp_path / "e")])
    assert result.exit_code == 1 and "2 folds (0, 1); explain uses one network: choose one with --fold K" in result.output
    result = runner.invoke(app, ["explain", "reference", str(cache), "-o", str(tmp_path / "e"), "--fold", "0",
                                 "--top-k", "1"])
    assert result.exit_code == 0, result.output


def test_explain_overlays_the_original_dicom_where_the_network_looked(dicom_folder: Path, tmp_path: Path) -> None:
    """A linear 'network' that looks only at grid pixel (5, 9) of a 16² input: its saliency peak,
    mapped back through the crop box and both resizes, lands on the DICOM pixels that grid pixel
    covers (hand-computed from the box), not on the network grid's coordinates."""
    import torch

    from ichscan.config import ExperimentConfig
    from ichscan.dicom import index_folder
    from ichscan.explain.run import explain_slices
    from ichscan.prepare import prepare_cache, read_slices
    from ichscan.train.run import LoadedModel

    cache = tmp_path / "cache"
    prepare_cache(index_folder(dicom_folder, workers=1, progress=False).manifest, cache, size=CACHE, crop=True,
                  workers=1, progress=False)
    contract = InputContract.build(cache_size=CACHE, crop=True, windows=("soft",), offsets=(0,), input_size=16)
    weights = torch.zeros(6, 16 * 16)
    weights[:, 5 * 16 + 9] = 1.0
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 6))
    with torch.no_grad():
        model[1].weight.copy_(weights)
        model[1].bias.zero_()
    loaded = LoadedModel(model=model, config=ExperimentConfig(), contract=contract, checkpoint=tmp_path / "x")
    row = read_slices(cache).iloc[[0]].reset_index(drop=True)
    table = explain_slices(loaded, cache, row, tmp_path / "out", methods=("saliency",), progress=False)
    assert (table["grid"] == "dicom").all()
    box = row.iloc[0]
    side = box["crop_y1"] - box["crop_y0"]  # square box: 16 grid pixels span it
    centre_y = box["crop_y0"] + (5 + 0.5) * side / 16 - 0.5
    centre_x = box["crop_x0"] + (9 + 0.5) * side / 16 - 0.5
    peak_y, peak_x = table.iloc[0]["saliency_peak_y"], table.iloc[0]["saliency_peak_x"]
    assert abs(peak_y - centre_y) <= side / 32 + 0.5 and abs(peak_x - centre_x) <= side / 32 + 0.5
    assert 0 <= peak_y < box["rows"] and 0 <= peak_x < box["columns"]
