"""prepare_cache end to end: order, HU, crop, bad files, resume, parallel workers."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
)
from series_factory import AIR, BRAIN, anatomical, head_volume, write_series

import ichscan.prepare.run as run_module
import ichscan.prepare.series as series_module
from ichscan.prepare import prepare_cache, read_series, read_slices
from ichscan.prepare.cache import CACHE_VERSION, series_path, sidecar_path
from ichscan.prepare.series import SeriesTask, prepare_series

ALL_SYNTAXES = (ExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless)


def test_cache_holds_exact_hu_in_anatomical_order_from_shuffled_mixed_files(tmp_path: Path) -> None:
    volume = head_volume(depth=5, rows=32, columns=40, center=(15.0, 20.0), radii=(10.0, 12.0),
                         head_rest_row=28)
    manifest = write_series(tmp_path / "dicom", volume, syntaxes=ALL_SYNTAXES, spacing=-2.5)
    result = prepare_cache(manifest, tmp_path / "cache", size=0, crop=False, workers=1, progress=False)
    uid = manifest["series_instance_uid"].iloc[0]
    cached = read_series(tmp_path / "cache", uid)
    assert cached.dtype == np.int16
    # positions descend with z, so anatomical order is the written volume reversed; padding
    # below air (−3024) is clipped to −1024 as documented in ichscan.dicom.hounsfield
    np.testing.assert_array_equal(cached, np.maximum(volume[::-1], AIR))
    np.testing.assert_array_equal(cached, np.maximum(anatomical(volume, -2.5), AIR))
    np.testing.assert_array_equal(cached[:, 15, 20], BRAIN + np.arange(5)[::-1])
    slices = read_slices(tmp_path / "cache")
    expected_sops = manifest.sort_values("position")["sop_instance_uid"].tolist()
    assert slices["sop_instance_uid"].tolist() == expected_sops
    assert slices["slice_index"].tolist() == list(range(5))
    assert (slices[["crop_y0", "crop_y1", "crop_x0", "crop_x1"]].to_numpy() == [0, 32, 0, 40]).all()
    assert (slices[["height", "width"]].to_numpy() == [32, 40]).all()
    assert set(manifest.columns) <= set(slices.columns)
    assert result.errors.empty and result.prepared == 1
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta == {"size": 0, "crop": False, "version": CACHE_VERSION, "invert_monochrome1": False,
                    "opencv_version": cv2.__version__}


def test_cropped_resized_cache_keeps_the_brain_and_drops_the_head_rest(tmp_path: Path) -> None:
    volume = head_volume(depth=4, rows=64, columns=80)
    manifest = write_series(tmp_path / "dicom", volume)
    prepare_cache(manifest, tmp_path / "cache", size=32, crop=True, workers=1, progress=False)
    slices = read_slices(tmp_path / "cache")
    cached = read_series(tmp_path / "cache", slices["series_instance_uid"].iloc[0])
    assert cached.shape == (4, 32, 32)
    y0, y1, x0, x1 = slices[["crop_y0", "crop_y1", "crop_x0", "crop_x1"]].iloc[0]
    assert y1 - y0 == x1 - x0 and y1 <= 54 and y0 <= 10 and x0 <= 26 and x1 >= 54
    # brain centre keeps its HU (uniform region): slice z holds 40 + (3 − z) after reordering
    np.testing.assert_array_equal(cached[:, 16, 16], BRAIN + np.arange(4)[::-1])
    # tight: the head is taller than wide, so the skull comes within 3 px of top and bottom
    for band in (cached[:, :3], cached[:, -3:]):
        assert band.max() > 300
    assert (cached[:, [0, 0, -1, -1], [0, -1, 0, -1]] == AIR).all()
    assert (slices[["height", "width"]].to_numpy() == 32).all()


def test_every_file_is_decoded_once(tmp_path: Path, three_series: pd.DataFrame,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    fast_reads: list[str] = []
    real_read_dataset = series_module.read_dataset
    real_read_fast = series_module.read_fast

    def counting_read_dataset(path: str, *args: object, **kwargs: object) -> pydicom.Dataset:
        reads.append(str(path))
        return real_read_dataset(path, *args, **kwargs)

    def counting_read_fast(path: str, *args: object) -> object:
        fast_reads.append(str(path))
        return real_read_fast(path, *args)

    monkeypatch.setattr(series_module, "read_dataset", counting_read_dataset)
    monkeypatch.setattr(series_module, "read_fast", counting_read_fast)
    prepare_cache(three_series, tmp_path / "cache", size=16, workers=1, progress=False)
    # uncompressed slices take the fast reader only; pydicom is the fallback, never a second read
    assert sorted(fast_reads) == sorted(three_series["path"])
    assert reads == []


def test_bad_file_is_reported_for_its_whole_series_and_the_run_continues(
    tmp_path: Path, three_series: pd.DataFrame
) -> None:
    bad_series = three_series["series_instance_uid"].unique()[0]
    rows = three_series[three_series["series_instance_uid"] == bad_series]
    bad_path = Path(rows["path"].iloc[0])
    bad_path.write_bytes(bad_path.read_bytes()[:400])  # truncated mid-header/pixels
    result = prepare_cache(three_series, tmp_path / "cache", size=16, workers=1, progress=False)
    assert result.prepared == 2 and result.failed == 1
    errors = result.errors.set_index("path")["reason"]
    assert sorted(errors.index) == sorted(rows["path"])
    assert str(bad_path) not in errors[str(bad_path)]  # its own reason …
    others = errors.drop(str(bad_path))
    assert others.str.contains(f"series {bad_series} dropped").all()  # … the rest name it
    assert others.str.contains(str(bad_path), regex=False).all()
    # nothing vanishes: every manifest row is either cached or reported
    assert sorted([*result.slices["path"], *result.errors["path"]]) == sorted(three_series["path"])
    on_disk = pd.read_csv(tmp_path / "cache" / "errors.csv")
    pd.testing.assert_frame_equal(on_disk, result.errors)
    assert not series_path(tmp_path / "cache", bad_series).exists()


def test_missing_changed_and_pixel_truncated_files_are_reported(
    tmp_path: Path, three_series: pd.DataFrame
) -> None:
    manifest = three_series.copy()
    first, second, third = manifest["series_instance_uid"].unique()
    rows_of = {uid: manifest.index[manifest["series_instance_uid"] == uid] for uid in (first, second, third)}
    manifest.loc[rows_of[first][0], "path"] = str(tmp_path / "gone.dcm")
    manifest.loc[rows_of[second][0], "sop_instance_uid"] = "1.2.3"
    cut = Path(manifest.loc[rows_of[third][0], "path"])
    cut.write_bytes(cut.read_bytes()[:-1000])  # the copy stopped inside the pixel data
    result = prepare_cache(manifest, tmp_path / "cache", size=16, workers=1, progress=False)
    reasons = result.errors.set_index("path")["reason"]
    assert "No such file" in reasons[str(tmp_path / "gone.dcm")]
    assert "differs from the manifest's 1.2.3" in reasons[manifest.loc[rows_of[second][0], "path"]]
    assert reasons[str(cut)] != "" and str(cut) not in reasons[str(cut)]
    assert (result.failed, result.prepared) == (3, 0) and len(result.errors) == len(manifest)
    assert result.slices.empty


def test_series_with_mixed_matrix_sizes_is_dropped_with_a_reason(tmp_path: Path) -> None:
    big = write_series(tmp_path / "a", head_volume(depth=3, rows=32, columns=32), seed=1)
    uid = big["series_instance_uid"].iloc[0]
    small = write_series(tmp_path / "b", head_volume(depth=1, rows=24, columns=24), seed=2, series_uid=uid)
    small["slice_index"] = 3
    result = prepare_cache(pd.concat([big, small]), tmp_path / "cache", size=16, workers=1, progress=False)
    assert result.slices.empty and len(result.errors) == 4
    assert result.errors["reason"].str.contains(r"matrix \(24, 24\) differs").all()


def test_interrupted_run_resumes_without_redoing_finished_series(
    tmp_path: Path, three_series: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    calls: list[str] = []

    def interrupted_after_one(task: SeriesTask) -> object:
        if calls:
            raise KeyboardInterrupt  # the user pressed ^C during the second series
        calls.append(task.series_instance_uid)
        return prepare_series(task)

    monkeypatch.setattr(run_module, "prepare_series", interrupted_after_one)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(three_series, cache, size=16, workers=1, progress=False)
    monkeypatch.undo()
    done = calls[0]
    finished_mtime = series_path(cache, done).stat().st_mtime_ns
    assert not (cache / "slices.parquet").exists()
    # what a kill -9 leaves: a half-written volume under a temporary name, and a volume renamed
    # into place whose sidecar was never written
    others = [uid for uid in three_series["series_instance_uid"].unique() if uid != done]
    stale = cache / "series" / f".{others[0]}.npy.999999999-0123abcd.tmp.npy"
    stale.write_bytes(b"\x93NUMPY half")
    series_path(cache, others[1]).write_bytes(b"\x93NUMPY half")

    result = prepare_cache(three_series, cache, size=16, workers=1, progress=False)
    assert (result.skipped, result.prepared, result.failed) == (1, 2, 0)
    assert series_path(cache, done).stat().st_mtime_ns == finished_mtime  # not rewritten
    assert not stale.exists()
    fresh = prepare_cache(three_series, tmp_path / "fresh", size=16, workers=1, progress=False)
    for uid in three_series["series_instance_uid"].unique():
        np.testing.assert_array_equal(read_series(cache, uid), read_series(tmp_path / "fresh", uid))
    pd.testing.assert_frame_equal(result.slices, fresh.slices)


def test_a_series_is_redone_when_its_slices_changed(tmp_path: Path, three_series: pd.DataFrame) -> None:
    cache = tmp_path / "cache"
    prepare_cache(three_series, cache, size=16, workers=1, progress=False)
    uid = three_series["series_instance_uid"].iloc[0]
    rows = three_series[three_series["series_instance_uid"] == uid].sort_values("slice_index")
    shorter = three_series.drop(rows.index[-1])
    result = prepare_cache(shorter, cache, size=16, workers=1, progress=False)
    assert (result.prepared, result.skipped) == (1, 2)
    assert read_series(cache, uid).shape[0] == len(rows) - 1
    sidecar = json.loads(sidecar_path(cache, uid).read_text())
    assert sidecar["sop_instance_uids"] == rows["sop_instance_uid"].tolist()[:-1]


def test_a_cache_is_not_resumed_with_other_settings(tmp_path: Path, three_series: pd.DataFrame) -> None:
    prepare_cache(three_series, tmp_path / "cache", size=16, workers=1, progress=False)
    with pytest.raises(ValueError, match="size=16"):
        prepare_cache(three_series, tmp_path / "cache", size=32, workers=1, progress=False)


def test_parallel_workers_give_the_same_cache_as_one(tmp_path: Path, three_series: pd.DataFrame) -> None:
    serial = prepare_cache(three_series, tmp_path / "one", size=16, workers=1, progress=False)
    parallel = prepare_cache(three_series, tmp_path / "two", size=16, workers=2, progress=False)
    pd.testing.assert_frame_equal(serial.slices, parallel.slices)
    for uid in three_series["series_instance_uid"].unique():
        np.testing.assert_array_equal(read_series(tmp_path / "one", uid), read_series(tmp_path / "two", uid))


def test_worker_returns_metadata_not_the_volume(tmp_path: Path) -> None:
    # memory bound, structurally: what travels back to the parent does not grow with the series
    outcomes = []
    for depth in (2, 40):
        manifest = write_series(tmp_path / f"d{depth}", head_volume(depth=depth), seed=depth)
        task = SeriesTask(
            series_instance_uid=manifest["series_instance_uid"].iloc[0],
            paths=tuple(manifest.sort_values("slice_index")["path"]),
            sop_instance_uids=tuple(manifest.sort_values("slice_index")["sop_instance_uid"]),
            cache_dir=tmp_path / "cache",
            settings=run_module.CacheSettings(size=64, crop=True),
        )
        (tmp_path / "cache" / "series").mkdir(parents=True, exist_ok=True)
        outcomes.append(prepare_series(task))
    small, large = (len(pickle.dumps(outcome)) for outcome in outcomes)
    volume_bytes = 40 * 64 * 64 * 2
    assert large < volume_bytes / 20
    assert large - small < 40 * 200  # only the SOPInstanceUID list grows


def test_read_series_memory_maps_and_names_missing_series(tmp_path: Path, three_series: pd.DataFrame) -> None:
    prepare_cache(three_series, tmp_path / "cache", size=16, workers=1, progress=False)
    uid = three_series["series_instance_uid"].iloc[0]
    mapped = read_series(tmp_path / "cache", uid, mmap=True)
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, read_series(tmp_path / "cache", uid))
    with pytest.raises(FileNotFoundError, match="9.9.9"):
        read_series(tmp_path / "cache", "9.9.9")
    with pytest.raises(FileNotFoundError, match="slices.parquet"):
        read_slices(tmp_path / "nowhere")


def test_manifest_without_needed_columns_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="slice_index"):
        prepare_cache(pd.DataFrame({"path": ["a"], "series_instance_uid": ["1"], "sop_instance_uid": ["2"]}),
                      tmp_path / "cache", progress=False)
