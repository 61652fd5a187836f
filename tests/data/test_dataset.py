"""SliceDataset / SeriesDataset over a cache written by the test (conftest.write_cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from ichscan.data import ChannelSpec, SeriesDataset, SliceDataset, apply_windows, collate_series
from ichscan.data.dataset import create_loader
from ichscan.labels import LABELS


def decode(hu: torch.Tensor) -> tuple[int, list[int]]:
    """(series number, z per offset) from the coded pixels ``1000·series + 10·z``."""
    values = hu[:, 0, 0].tolist()
    return values[0] // 1000, [(v % 1000) // 10 for v in values]


def test_neighbours_clamped_and_z_correct_for_shuffled_rows(coded_cache) -> None:
    cache_dir, slices = coded_cache
    offsets = (-2, -1, 0, 1, 2)
    dataset = SliceDataset(cache_dir, slices, offsets=offsets)
    assert len(dataset) == len(slices) == 10
    depth = {"1.2.3.0": 4, "1.2.3.1": 1, "1.2.3.2": 5}
    for i in range(len(dataset)):
        item = dataset[i]
        row = slices.iloc[i]
        assert item["index"] == i
        assert item["hu"].dtype == torch.int16 and item["hu"].shape == (5, 8, 8)
        series, zs = decode(item["hu"])
        assert f"1.2.3.{series}" == row["series_instance_uid"]
        last = depth[row["series_instance_uid"]] - 1
        assert zs == [min(max(row["slice_index"] + o, 0), last) for o in offsets]
        expected_labels = row[list(LABELS)].to_numpy(np.float32)
        np.testing.assert_array_equal(item["labels"].numpy(), expected_labels)


def test_first_and_last_slice_and_single_slice_series(coded_cache) -> None:
    cache_dir, slices = coded_cache
    dataset = SliceDataset(cache_dir, slices, offsets=(-1, 0, 1))
    rows = {(r.series_instance_uid, r.slice_index): i for i, r in enumerate(slices.itertuples())}
    assert decode(dataset[rows[("1.2.3.0", 0)]]["hu"])[1] == [0, 0, 1]
    assert decode(dataset[rows[("1.2.3.2", 4)]]["hu"])[1] == [3, 4, 4]
    assert decode(dataset[rows[("1.2.3.1", 0)]]["hu"])[1] == [0, 0, 0]


def test_subset_of_rows_keeps_series_depth_from_cache(coded_cache) -> None:
    cache_dir, slices = coded_cache
    last_only = slices[(slices.series_instance_uid == "1.2.3.2") & (slices.slice_index == 2)]
    dataset = SliceDataset(cache_dir, last_only, offsets=(-1, 0, 1))
    assert decode(dataset[0]["hu"])[1] == [1, 2, 3]  # neighbours come from the cache, not the rows


def test_few_open_series_still_correct(coded_cache) -> None:
    cache_dir, slices = coded_cache
    dataset = SliceDataset(cache_dir, slices, offsets=(0,), max_open_series=1)
    for i in range(len(dataset)):
        series, zs = decode(dataset[i]["hu"])
        assert (f"1.2.3.{series}", zs[0]) == tuple(slices.iloc[i][["series_instance_uid",
                                                                    "slice_index"]])


def test_loader_batches_int16_then_windows(coded_cache) -> None:
    cache_dir, slices = coded_cache
    dataset = SliceDataset(cache_dir, slices)
    loader = create_loader(dataset, batch_size=4, workers=1, prefetch_factor=2)
    batches = list(loader)
    assert [len(b["index"]) for b in batches] == [4, 4, 2]
    batch = batches[0]
    assert batch["hu"].dtype == torch.int16 and batch["hu"].shape == (4, 3, 8, 8)
    assert batch["labels"].shape == (4, 6) and batch["labels"].dtype == torch.float32
    assert torch.equal(torch.cat([b["index"] for b in batches]), torch.arange(10))
    x = apply_windows(batch["hu"], ChannelSpec(offsets=(-1, 0, 1)))
    assert x.shape == (4, 9, 8, 8) and x.dtype == torch.float32


def test_unlabelled_table_gives_nan_labels(coded_cache) -> None:
    cache_dir, slices = coded_cache
    dataset = SliceDataset(cache_dir, slices.drop(columns=list(LABELS)))
    assert torch.isnan(dataset[0]["labels"]).all()


def test_missing_series_file_is_named(coded_cache) -> None:
    cache_dir, slices = coded_cache
    (Path(cache_dir) / "series" / "1.2.3.1.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"1\.2\.3\.1\.npy"):
        SliceDataset(cache_dir, slices)


def test_slice_index_outside_volume_is_named(coded_cache) -> None:
    cache_dir, slices = coded_cache
    broken = slices.copy()
    broken.loc[broken.series_instance_uid == "1.2.3.0", "slice_index"] += 1
    with pytest.raises(ValueError, match=r"1\.2\.3\.0\.npy: slice_index 4 outside"):
        SliceDataset(cache_dir, broken)


def test_wrong_dtype_volume_is_named(cache_writer, tmp_path: Path) -> None:
    slices = cache_writer(tmp_path, {"9.9": np.zeros((2, 4, 4), dtype=np.int16)})
    np.save(tmp_path / "series" / "9.9.npy", np.zeros((2, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"9\.9\.npy: expected an int16"):
        SliceDataset(tmp_path, slices)


def test_series_dataset_orders_slices_and_pads(coded_cache) -> None:
    cache_dir, slices = coded_cache
    dataset = SeriesDataset(cache_dir, slices)
    assert len(dataset) == 3
    items = {dataset[i]["series_instance_uid"]: dataset[i] for i in range(3)}
    item = items["1.2.3.2"]
    assert [(v % 1000) // 10 for v in item["hu"][:, 0, 0].tolist()] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(slices.loc[item["index"].numpy(), "slice_index"], range(5))
    np.testing.assert_array_equal(item["labels"].numpy(),
                                  slices.loc[item["index"].numpy(), list(LABELS)].to_numpy())
    batch = collate_series([items["1.2.3.1"], items["1.2.3.2"]])
    assert batch["hu"].shape == (2, 5, 8, 8)
    assert batch["mask"].tolist() == [[True] + [False] * 4, [True] * 5]
    assert torch.isnan(batch["labels"][0, 1:]).all() and (batch["index"][0, 1:] == -1).all()


def test_pickled_dataset_reopens_volumes(coded_cache) -> None:
    import pickle

    cache_dir, slices = coded_cache
    dataset = SliceDataset(cache_dir, slices)
    first = dataset[0]["hu"]
    clone = pickle.loads(pickle.dumps(dataset))
    assert len(pickle.dumps(dataset)) < 20_000  # memory maps are not pickled as arrays
    assert torch.equal(clone[0]["hu"], first)
    assert isinstance(clone.slices, pd.DataFrame)
