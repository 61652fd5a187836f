"""Gaps in a cached series: 2.5D neighbours stay inside the slice's segment everywhere."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ichscan.prepare.cache import CacheSettings, SeriesRecord, neighbour_z
from ichscan.prepare.crop import CropBox
from ichscan.prepare.run import slices_table


def _table(segments: list[int]) -> pd.DataFrame:
    rows = pd.DataFrame(
        {"series_instance_uid": "1.2", "sop_instance_uid": [f"1.2.{k}" for k in range(len(segments))],
         "image_id": [f"ID_{k:02x}" for k in range(len(segments))], "study_instance_uid": "1",
         "patient_id": "P", "slice_index": range(len(segments)), "segment": segments}
    )
    record = SeriesRecord("1.2", tuple(rows["sop_instance_uid"]), CropBox(0, 4, 0, 4), 4, 4, CacheSettings())
    return slices_table([(rows, record)])


def test_segment_bounds_in_the_slices_table_and_neighbour_z() -> None:
    table = _table([0, 0, 0, 1, 1, 2])
    assert table["segment_first"].tolist() == [0, 0, 0, 3, 3, 5]
    assert table["segment_last"].tolist() == [2, 2, 2, 4, 4, 5]
    z = neighbour_z(table, (-1, 0, 1), np.full(len(table), 6))
    assert z.tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 2], [3, 3, 4], [3, 4, 4], [5, 5, 5]]
    # a subset of rows (a fold) keeps its bounds: they are columns, not recomputed
    assert neighbour_z(table.iloc[[2, 3]], (-1, 1), np.full(2, 6)).tolist() == [[1, 2], [3, 4]]
    # an older cache without the columns clamps at the series ends as before
    old = table.drop(columns=["segment_first", "segment_last"])
    assert neighbour_z(old, (-1, 1), np.full(len(old), 6))[[0, 5]].tolist() == [[0, 1], [4, 5]]


def test_dataset_and_predict_batches_never_join_slices_across_a_gap(tmp_path: Path) -> None:
    from ichscan.data import SliceDataset
    from ichscan.data.batches import iter_hu_batches

    table = _table([0, 0, 1, 1])
    (tmp_path / "series").mkdir()
    volume = np.arange(4, dtype=np.int16)[:, None, None] * np.ones((1, 4, 4), dtype=np.int16)
    np.save(tmp_path / "series" / "1.2.npy", volume)
    dataset = SliceDataset(tmp_path, table, offsets=(-1, 0, 1))
    assert [dataset[i]["hu"][:, 0, 0].tolist() for i in range(4)] == [[0, 0, 1], [0, 1, 1], [2, 2, 3], [2, 3, 3]]
    ((_, hu),) = list(iter_hu_batches(tmp_path, table, (-1, 0, 1), batch_size=8))
    assert hu[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 1], [2, 2, 3], [2, 3, 3]]
