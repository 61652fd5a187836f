"""`predict` end to end: DICOM folder, manifest and cache give the same predictions; outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ichscan.train.resolve import RunError
from run_factory import make_member, make_run_dir

from ichscan.labels import LABELS
from ichscan.predict import SLICE_COLUMNS, InputError, predict


def run(models: list, source: Path, out: Path, **kwargs: object):  # noqa: ANN201
    return predict(models, source, out, batch_size=3, workers=1, progress=False, precision="fp32", **kwargs)


def test_dicom_folder_manifest_and_cache_give_the_same_predictions(
    dicom_folder: Path, tmp_path: Path
) -> None:
    from ichscan.dicom import index_folder, write_manifest

    member = make_member(11)
    from_dicom = run([member], dicom_folder, tmp_path / "out-dicom")
    manifest = tmp_path / "manifest.parquet"
    write_manifest(index_folder(dicom_folder, workers=1, progress=False), manifest)
    from_manifest = run([member], manifest, tmp_path / "out-manifest", cache_dir=tmp_path / "cache")
    from_cache = run([member], tmp_path / "cache", tmp_path / "out-cache")

    written = pd.read_parquet(tmp_path / "out-dicom" / "slices.parquet")
    assert list(written.columns) == list(SLICE_COLUMNS)
    assert len(written) == 7 and written["image_id"].str.startswith("ID_").all()
    for other in (from_manifest, from_cache):
        pd.testing.assert_frame_equal(other.slices, from_dicom.slices)
    # Anatomical order: slice_index follows the z position, not the file order.
    series = written[written.series_instance_uid == "1.3.1.1"]
    assert series["sop_instance_uid"].tolist() == [f"1.3.1.1.{z}" for z in range(4)]
    assert series["slice_index"].tolist() == [0, 1, 2, 3]
    # The temporary cache is gone; the kept one is a cache.
    assert not list((tmp_path / "out-dicom").glob(".cache-*"))
    assert (tmp_path / "cache" / "meta.json").is_file()


def test_corrupt_file_is_reported_and_the_rest_predicted(dicom_folder: Path, tmp_path: Path) -> None:
    result = run([make_member(12)], dicom_folder, tmp_path / "out")
    errors = pd.read_csv(tmp_path / "out" / "errors.csv")
    assert list(errors.columns) == ["path", "reason"]
    assert [Path(p).name for p in errors["path"]] == ["broken.dcm"]
    assert errors["reason"].str.len().min() > 0
    assert len(result.slices) == 7 and np.isfinite(result.slices[list(LABELS)].to_numpy()).all()


def test_files_the_cache_skipped_are_reported_again(
    tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    cache, slices = tiny_cache
    pd.DataFrame({"path": ["/data/x.dcm"], "reason": ["series 1.9 not cached: duplicate positions"]}).to_csv(
        cache / "errors.csv", index=False
    )
    result = run([make_member(14)], cache, tmp_path / "out")
    assert len(result.slices) == len(slices)
    assert pd.read_csv(tmp_path / "out" / "errors.csv").values.tolist() == [
        ["/data/x.dcm", "series 1.9 not cached: duplicate positions"]
    ]


def test_outputs_submission_and_study_summary(dicom_folder: Path, tmp_path: Path) -> None:
    result = run([make_member(13)], dicom_folder, tmp_path / "out", threshold=0.3, top_k=2)
    out = tmp_path / "out"
    slices = pd.read_parquet(out / "slices.parquet")
    submission = pd.read_csv(out / "submission.csv")
    assert len(submission) == 6 * len(slices)
    first = slices.iloc[0]
    rows = submission.iloc[:6]
    assert rows["ID"].tolist() == [f"{first.image_id}_{label}" for label in LABELS]
    np.testing.assert_allclose(rows["Label"], first[list(LABELS)].to_numpy(float), rtol=1e-6)

    summary = json.loads((out / "studies.json").read_text())
    assert summary["top_k"] == 2 and summary["n_slices"] == 7 and summary["n_errors"] == 1
    studies = {s["study_instance_uid"]: s for s in summary["studies"]}
    assert set(studies) == {"1.3.1", "1.3.2"}
    for uid, study in studies.items():
        own = slices[slices.study_instance_uid == uid]
        assert study["n_slices"] == len(own) and study["patient_id"] == f"P{uid}"
        assert study["probability_any"] == pytest.approx(own["any"].max())
        expected_top = own.sort_values("any", ascending=False, kind="stable")["image_id"].tolist()[:2]
        assert [s["image_id"] for s in study["suspicious_slices"]] == expected_top
        present = [s for s in LABELS[1:] if own[s].max() >= 0.3]
        assert study["subtypes_present"] == present
    table = pd.read_csv(out / "studies.csv")
    assert table["study_instance_uid"].astype(str).tolist() == [
        s["study_instance_uid"] for s in summary["studies"]
    ]
    assert result.timings["inference"] > 0 and {"index", "prepare", "writing"} <= set(result.timings)


def test_run_directories_as_an_ensemble(tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    cache, _ = tiny_cache
    first = make_run_dir(tmp_path / "a", "first", seed=1)
    second = make_run_dir(tmp_path / "b", "second", seed=2, windows=("brain",), offsets=(-1, 0, 1), size=24)
    both = run([first, second], cache, tmp_path / "both", weights=[1.0, 3.0], tta=True)
    tta_single = [
        run([r], cache, tmp_path / f"tta-{r.parent.name}", tta=True).slices for r in (first, second)
    ]
    expected = 0.25 * tta_single[0][list(LABELS)].to_numpy() + 0.75 * tta_single[1][list(LABELS)].to_numpy()
    np.testing.assert_allclose(both.slices[list(LABELS)].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    stored = json.loads((tmp_path / "both" / "studies.json").read_text())
    assert (
        stored["models"] == ["first/fold0", "second/fold0"]
        and stored["weights"] == [0.25, 0.75]
        and stored["tta"]
    )


def test_a_folder_of_fold_runs_is_their_ensemble(
    tiny_cache: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    cache, _ = tiny_cache
    folds = [make_run_dir(tmp_path, "cv", fold=k, seed=20 + k) for k in (0, 1)]
    other = make_run_dir(tmp_path / "x", "other", seed=30)
    per_run = [
        run([r], cache, tmp_path / f"o{k}").slices[list(LABELS)].to_numpy()
        for k, r in enumerate([*folds, other])
    ]
    combined = run([folds[0].parent, other], cache, tmp_path / "cv", weights=[1.0, 1.0])
    # The folder's weight (1/2) is shared by its two folds.
    expected = 0.25 * per_run[0] + 0.25 * per_run[1] + 0.5 * per_run[2]
    np.testing.assert_allclose(combined.slices[list(LABELS)].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    stored = json.loads((tmp_path / "cv" / "studies.json").read_text())
    assert stored["models"] == ["cv/fold0", "cv/fold1", "other/fold0"]
    assert stored["weights"] == [0.25, 0.25, 0.5]
    with pytest.raises(RunError, match="x: not an ichscan run"):
        run([tmp_path / "x"], cache, tmp_path / "bad")


def test_unusable_input_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("hello")
    with pytest.raises(InputError, match=r"notes\.txt: not a DICOM folder, a manifest"):
        run([make_member(1)], bogus, tmp_path / "out")
    with pytest.raises(ValueError, match="3 weights given for 1 models"):
        run([make_member(1)], tmp_path, tmp_path / "out", weights=[1, 2, 3])
