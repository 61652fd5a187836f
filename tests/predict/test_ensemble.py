"""Ensemble maths, flip TTA and sharing of the HU batch between members."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from run_factory import CACHE_SIZE, make_member, write_cache

from ichscan.data.windows import apply_windows
from ichscan.predict import combine_probabilities, normalize_weights, predict_probabilities
from ichscan.data.batches import iter_hu_batches, neighbour_stacks


def test_normalize_weights_equal_and_rescaled() -> None:
    assert normalize_weights(None, 4).tolist() == [0.25, 0.25, 0.25, 0.25]
    assert normalize_weights([3.0, 1.0], 2).tolist() == [0.75, 0.25]


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "1 weights given for 2 models"), ([1.0, -1.0], "non-negative"), ([0.0, 0.0], "sum to zero")],
)
def test_normalize_weights_rejects_bad_input(weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize_weights(weights, 2)


def test_combine_probabilities_is_the_weighted_mean() -> None:
    first = np.array([[0.2, 0.4, 0.0, 1.0, 0.5, 0.1]])
    second = np.array([[0.6, 0.0, 1.0, 0.0, 0.5, 0.9]])
    combined = combine_probabilities(np.stack([first, second]), np.array([0.75, 0.25]))
    # 0.75·a + 0.25·b, by hand.
    expected = [[0.3, 0.3, 0.25, 0.75, 0.5, 0.3]]
    np.testing.assert_allclose(combined, expected, rtol=1e-6)
    assert combined.dtype == np.float32


def test_neighbour_stacks_clamp_at_series_ends() -> None:
    volume = np.arange(4, dtype=np.int16)[:, None, None] * np.ones((1, 2, 2), dtype=np.int16)
    stacks = neighbour_stacks(volume, np.array([0, 2, 3]), (-1, 0, 1))
    assert stacks.shape == (3, 3, 2, 2)
    assert stacks[:, :, 0, 0].tolist() == [[0, 0, 1], [1, 2, 3], [2, 3, 3]]


def test_batches_cover_every_row_once_across_series(tiny_cache: tuple[Path, pd.DataFrame]) -> None:
    cache, slices = tiny_cache
    batches = list(iter_hu_batches(cache, slices, (0,), batch_size=5))
    assert [len(rows) for rows, _ in batches] == [5, 5, 2]
    rows = np.concatenate([rows for rows, _ in batches])
    assert sorted(rows.tolist()) == list(range(len(slices)))
    row, hu = batches[1][0][0], batches[1][1][0, 0]
    volume = np.load(cache / "series" / f"{slices.series_instance_uid[row]}.npy")
    np.testing.assert_array_equal(hu, volume[slices.slice_index[row]])


def test_ensemble_of_a_model_with_itself_equals_the_model(tiny_cache: tuple[Path, pd.DataFrame]) -> None:
    cache, slices = tiny_cache
    member = make_member(1)
    alone = predict_probabilities([member], cache, slices, precision="fp32", progress=False)
    twice = predict_probabilities([member, member], cache, slices, precision="fp32", progress=False)
    np.testing.assert_allclose(twice, alone, rtol=1e-6, atol=1e-7)
    assert alone.shape == (len(slices), 6) and np.isfinite(alone).all()


def test_weighted_ensemble_is_weighted_mean_of_single_runs(tiny_cache: tuple[Path, pd.DataFrame]) -> None:
    cache, slices = tiny_cache
    first, second = make_member(1), make_member(2, windows=("brain",), offsets=(-1, 0, 1), size=24)
    p1 = predict_probabilities([first], cache, slices, precision="fp32", progress=False)
    p2 = predict_probabilities([second], cache, slices, precision="fp32", progress=False)
    assert not np.allclose(p1, p2)
    mixed = predict_probabilities(
        [first, second], cache, slices, weights=[0.6, 0.2], precision="fp32", progress=False
    )
    np.testing.assert_allclose(mixed, 0.75 * p1 + 0.25 * p2, rtol=1e-5, atol=1e-6)


def test_single_member_matches_model_run_by_hand(tiny_cache: tuple[Path, pd.DataFrame]) -> None:
    cache, slices = tiny_cache
    member = make_member(3, offsets=(-1, 0, 1))
    got = predict_probabilities([member], cache, slices, precision="fp32", batch_size=4, progress=False)
    uid = "1.2.aaa"
    volume = np.load(cache / "series" / f"{uid}.npy")
    stacks = np.stack([volume[[max(i - 1, 0), i, min(i + 1, len(volume) - 1)]] for i in range(len(volume))])
    with torch.inference_mode():
        logits = member.model(apply_windows(torch.from_numpy(stacks), member.channel_spec))
    rows = np.flatnonzero(slices.series_instance_uid == uid)
    np.testing.assert_allclose(got[rows], torch.sigmoid(logits).numpy(), rtol=1e-4, atol=1e-5)


def test_flip_tta_of_a_mirror_symmetric_input_equals_no_tta(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    half = rng.integers(-50, 120, size=(3, CACHE_SIZE, CACHE_SIZE // 2)).astype(np.int16)
    symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)  # left-right mirror, not up-down
    slices = write_cache(tmp_path / "cache", {"1.5.sym": symmetric}, {"1.5.sym": "7.7"})
    member = make_member(4)
    plain = predict_probabilities([member], tmp_path / "cache", slices, precision="fp32", progress=False)
    tta = predict_probabilities(
        [member], tmp_path / "cache", slices, tta=True, precision="fp32", progress=False
    )
    np.testing.assert_allclose(tta, plain, rtol=1e-5, atol=1e-6)


def test_flip_tta_averages_the_image_and_its_horizontal_mirror(tiny_cache: tuple[Path, pd.DataFrame]) -> None:
    cache, slices = tiny_cache
    member = make_member(5)
    tta = predict_probabilities([member], cache, slices, tta=True, precision="fp32", progress=False)
    rows = np.flatnonzero(slices.series_instance_uid == "1.2.ccc")
    volume = torch.from_numpy(np.load(cache / "series" / "1.2.ccc.npy"))[:, None]
    with torch.inference_mode():
        x = apply_windows(volume, member.channel_spec)
        expected = (torch.sigmoid(member.model(x)) + torch.sigmoid(member.model(x.flip(-1)))) / 2
        plain = torch.sigmoid(member.model(x))
    np.testing.assert_allclose(tta[rows], expected.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(tta[rows], plain.numpy(), atol=1e-6)


def test_bf16_autocast_stays_close_to_fp32(tiny_cache: tuple[Path, pd.DataFrame]) -> None:
    cache, slices = tiny_cache
    member = make_member(6)
    fp32 = predict_probabilities([member], cache, slices, precision="fp32", progress=False)
    bf16 = predict_probabilities([member], cache, slices, precision="bf16", progress=False)
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
