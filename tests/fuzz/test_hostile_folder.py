"""`ichscan index` and `ichscan prepare` over a folder mixing good series with every hostile kind.

For each hostile entry (corpus.hostile_folder): the good series come through complete and
byte-identical to a run on the good series alone; every bad file is listed with its reason (never
silently dropped); nothing is written outside the output folder; no traceback reaches the user;
each command ends within its time limit under a 4 GiB address-space cap, and its peak memory (the
largest process, workers included) stays bounded although the folder holds 65535² bombs in every
transfer syntax, a deflate bomb and a 2 GB file.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_measured
from corpus import HostileFolder, hostile_folder

from ichscan.prepare import read_series, read_slices

PEAK_RSS_LIMIT_MIB = 600  # measured ~250: interpreter + pandas/OpenCV + one bounded file
TIME_LIMIT_S = 120


def tree(root: Path) -> set[str]:
    """Every path under `root` (not following symlinks)."""
    return {os.path.relpath(os.path.join(folder, name), root)
            for folder, subfolders, names in os.walk(root) for name in subfolders + names}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> HostileFolder:
    return hostile_folder(tmp_path_factory.mktemp("hostile") / "dicom")


@pytest.fixture(scope="module")
def reference(hostile: HostileFolder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache of the good series alone (the answer the hostile run must reproduce)."""
    root = tmp_path_factory.mktemp("clean")
    for name, paths in hostile.good_series.items():
        (root / "dicom" / name).mkdir(parents=True)
        for path in paths:
            shutil.copy(path, root / "dicom" / name / path.name)
    index = run_measured(["index", str(root / "dicom"), "-o", str(root / "m.parquet"), "--no-progress"])
    assert index["returncode"] == 0, index
    prepare = run_measured(["prepare", str(root / "m.parquet"), "-o", str(root / "cache"), "--size", "0", "-q"])
    assert prepare["returncode"] == 0, prepare
    return root / "cache"


@pytest.mark.slow
def test_hostile_folder_index_and_prepare(hostile: HostileFolder, reference: Path, tmp_path: Path) -> None:
    sandbox = hostile.root.parent
    before = tree(sandbox)
    out = sandbox / "out"
    index = run_measured(["index", str(hostile.root), "-o", str(out / "m.parquet"), "--workers", "2",
                          "--no-progress"], timeout=TIME_LIMIT_S)
    prepare = run_measured(["prepare", str(out / "m.parquet"), "-o", str(out / "cache"), "--size", "0",
                            "--workers", "2", "-q"], timeout=TIME_LIMIT_S)
    for name, run in (("index", index), ("prepare", prepare)):
        assert run["returncode"] == 3, (name, run["returncode"], run["stderr"][-2000:])  # partial: data lost
        assert "Traceback" not in run["stdout"] + run["stderr"], (name, run["stderr"][-3000:])
        assert run["peak_rss_mib"] < PEAK_RSS_LIMIT_MIB, (name, run["peak_rss_mib"])
        assert run["seconds"] < TIME_LIMIT_S
    assert "Lost " in index["stderr"] and "m.errors.csv" in index["stderr"]

    # nothing written outside the output folder (no "escape" anywhere, no stray file)
    assert {p for p in tree(sandbox) - before if not p.startswith("out")} == set()
    assert not Path("/tmp/escape").exists()

    # every bad entry is listed with its reason; accepted ones are cached
    errors = pd.concat([pd.read_csv(out / "m.errors.csv", dtype=str), pd.read_csv(out / "cache" / "errors.csv", dtype=str)])
    reasons = dict(zip(errors["path"], errors["reason"]))
    slices = read_slices(out / "cache")
    cached = set(slices["path"])
    problems = []
    for expectation in hostile.expectations:
        shown = os.fsencode(expectation.path).decode("utf-8", "backslashreplace")
        if expectation.outcome == "refused":
            reason = reasons.get(shown)
            if reason is None or expectation.reason not in reason:
                problems.append(f"{shown}: expected refusal {expectation.reason!r}, got {reason!r}")
        elif expectation.outcome == "accepted":
            if shown not in cached:
                problems.append(f"{shown}: expected cached, got {reasons.get(shown)!r}")
        elif shown in reasons or shown in cached:
            problems.append(f"{shown}: expected skipped by name")
    assert not problems, problems
    assert "skipped" in index["stdout"] and "1" in index["stdout"]  # DICOMDIR counted as skipped

    # the good series: complete and byte-identical to the clean run
    clean = read_slices(reference)
    for uid in clean["series_instance_uid"].unique():
        np.testing.assert_array_equal(read_series(out / "cache", uid), read_series(reference, uid))
        assert (out / "cache" / "series" / f"{uid}.npy").read_bytes() == (reference / "series" / f"{uid}.npy").read_bytes()

    # the series with holes: cached with its gaps recorded, and reported
    gap = slices[slices["series_instance_uid"] == hostile.gap_series].sort_values("slice_index")
    assert gap["segment"].tolist() == [0, 1, 2, 3, 4]  # 0, 10, 20, 35, 45 mm: a hole between each
    assert (gap["segment_first"] == gap["slice_index"]).all() and (gap["segment_last"] == gap["slice_index"]).all()
    warnings = pd.read_csv(out / "m.warnings.csv")
    assert warnings.loc[warnings["series_instance_uid"] == hostile.gap_series, "warning"].str.startswith("gap: 4 hole(s)").all()
    # the series without ImagePositionPatient: ordered by SliceLocation, with a warning
    fallback = slices[slices["series_instance_uid"] == hostile.fallback_series].sort_values("slice_index")
    assert [Path(p).name for p in fallback["path"]] == ["f4.dcm", "f3.dcm", "f2.dcm", "f1.dcm", "f0.dcm"]
    assert (fallback["ordered_by"] == "slice_location").all()
    assert "ordered by SliceLocation" in " ".join(warnings["warning"])


@pytest.mark.slow
def test_hostile_folder_predict(hostile: HostileFolder, tmp_path: Path) -> None:
    """`predict` straight on the hostile folder (it indexes and prepares in-process) under the
    6 GiB cap the bombs used to exceed: ends, lists the bad files, writes only inside OUT."""
    from run_factory import make_run_dir

    model = make_run_dir(tmp_path / "train", "demo", seed=1)
    sandbox = hostile.root.parent
    before = tree(sandbox)
    out = sandbox / "predicted"
    run = run_measured(["predict", "--model", str(model), str(hostile.root), "-o", str(out),
                        "--no-progress", "--workers", "2"], timeout=TIME_LIMIT_S, cap=6 << 30)
    assert run["returncode"] == 0, run["stderr"][-3000:]
    assert "Traceback" not in run["stdout"] + run["stderr"]
    assert {p for p in tree(sandbox) - before if not p.startswith("predicted")} == set()
    errors = pd.read_csv(out / "errors.csv", dtype=str)
    refused = [e for e in hostile.expectations if e.outcome == "refused"]
    listed = set(errors["path"])
    assert all(os.fsencode(e.path).decode("utf-8", "backslashreplace") in listed for e in refused)
    predicted = pd.read_parquet(out / "slices.parquet")
    good = {str(pydicom_uid) for pydicom_uid in hostile.good_uids}
    assert good <= set(predicted["series_instance_uid"])  # the good series are predicted
