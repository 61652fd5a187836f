"""End to end: the RSNA layout on disk, labels that follow the masks, exact HU round trip,
determinism, and the `ichscan synth` command."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.labels import LABELS, SUBTYPES
from ichscan.phantom import OutputExistsError, PhantomConfig, SUBTYPE_BIT, iter_studies, synthesize
from ichscan.phantom.study import render_series

CONFIG = PhantomConfig(
    size=64, positive_fraction=1.0, second_series_fraction=0.5, compressed_fraction=0.5,
    subtype_boost={"epidural": 10.0}, tilted_fraction=0.5,
)
N_STUDIES = 3


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    synthesize(out, N_STUDIES, seed=5, config=CONFIG, progress=False, preview=True)
    return out


def _hounsfield(ds: pydicom.Dataset) -> np.ndarray:
    """HU with the DOMAIN.md rule for the RSNA 12-bit defect."""
    stored = ds.pixel_array.astype(np.int32)
    intercept = float(ds.RescaleIntercept)
    if ds.BitsStored == 12 and ds.PixelRepresentation == 0 and intercept > -100:
        stored = stored + 1000
        stored[stored >= 4096] -= 4096
        intercept = -1000.0
    return stored * float(ds.RescaleSlope) + intercept


def _labels(out: Path) -> pd.DataFrame:
    table = pd.read_csv(out / "train.csv")
    parts = table["ID"].str.rsplit("_", n=1, expand=True)
    return table.assign(image_id=parts[0], subtype=parts[1])


def test_layout_and_six_label_rows_per_image_in_label_order(phantom: Path) -> None:
    files = sorted(p.stem for p in phantom.glob("*.dcm"))
    assert all(name.startswith("ID_") and len(name) == 12 for name in files)
    labels = _labels(phantom)
    assert list(labels.columns[:2]) == ["ID", "Label"]
    assert set(labels["image_id"]) == set(files)
    for _, rows in labels.groupby("image_id", sort=False):
        assert list(rows["subtype"]) == list(LABELS)
    assert set(labels["Label"]) <= {0, 1}
    studies = pd.read_csv(phantom / "studies.csv", keep_default_na=False)
    assert studies["n_slices"].sum() == len(files)
    assert studies["study_instance_uid"].nunique() == N_STUDIES
    assert (phantom / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(phantom.glob(".*tmp*"))  # no temporary files left behind


def test_labels_follow_the_masks_and_any_is_derived(phantom: Path) -> None:
    labels = _labels(phantom).pivot(index="image_id", columns="subtype", values="Label")
    studies = pd.read_csv(phantom / "studies.csv", keep_default_na=False)
    seen = 0
    for row in studies.itertuples():
        stored = np.load(phantom / "masks" / f"{row.series_instance_uid}.npz")
        mask, ids, threshold = stored["mask"], stored["image_ids"], int(stored["min_voxels"])
        assert mask.dtype == np.uint8 and mask.shape == (row.n_slices, 64, 64) and len(ids) == row.n_slices
        assert threshold == int(np.ceil(CONFIG.label_min_area_mm2 / (float(
            pydicom.dcmread(phantom / f"{ids[0]}.dcm", stop_before_pixels=True).PixelSpacing[0]) ** 2)))
        for name in SUBTYPES:
            expected = ((mask & SUBTYPE_BIT[name]) > 0).sum(axis=(1, 2)) >= threshold
            np.testing.assert_array_equal(labels.loc[list(ids), name].to_numpy(), expected.astype(int))
        subtype_labels = labels.loc[list(ids), list(SUBTYPES)].to_numpy()
        np.testing.assert_array_equal(labels.loc[list(ids), "any"].to_numpy(), subtype_labels.max(axis=1))
        present = [s for s in SUBTYPES if labels.loc[list(ids), s].any()]
        assert row.subtypes == ";".join(present)
        seen += int(subtype_labels.sum())
    assert seen > 0  # positive_fraction=1: there are hemorrhages to check


def test_masks_are_in_anatomical_order_and_uids_are_consistent(phantom: Path) -> None:
    studies = pd.read_csv(phantom / "studies.csv", keep_default_na=False)
    for row in studies.itertuples():
        ids = np.load(phantom / "masks" / f"{row.series_instance_uid}.npz")["image_ids"]
        headers = [pydicom.dcmread(phantom / f"{i}.dcm", stop_before_pixels=True) for i in ids]
        orientation = np.array(headers[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        positions = [float(np.dot(np.array(h.ImagePositionPatient, dtype=float), normal)) for h in headers]
        assert np.all(np.diff(positions) == pytest.approx(5.0, abs=1e-3))  # ascending, 5 mm apart
        assert {h.SeriesInstanceUID for h in headers} == {row.series_instance_uid}
        assert {h.StudyInstanceUID for h in headers} == {row.study_instance_uid}
        assert {h.PatientID for h in headers} == {row.patient_id}
        assert len({h.SOPInstanceUID for h in headers}) == len(headers)
        assert len({h.FrameOfReferenceUID for h in headers}) == 1


def test_pixels_read_back_are_the_generated_hounsfield_units(phantom: Path) -> None:
    variants = set()
    for plan in iter_studies(N_STUDIES, 5, CONFIG):
        for series in plan.series:
            generated = np.concatenate([b.hounsfield for b in render_series(plan, series, CONFIG.chunk_slices)])
            for k, image_id in enumerate(series.image_ids):
                ds = pydicom.dcmread(phantom / f"{image_id}.dcm")
                np.testing.assert_array_equal(_hounsfield(ds), generated[k])
                variants.add((ds.file_meta.TransferSyntaxUID, int(ds.BitsStored), int(ds.PixelRepresentation)))
    assert len(variants) >= 2


def test_same_seed_same_data_other_seed_other_data(phantom: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    synthesize(again, N_STUDIES, seed=5, config=CONFIG, progress=False, workers=2)
    names = sorted(p.name for p in phantom.glob("*.dcm"))
    assert names == sorted(p.name for p in again.glob("*.dcm"))
    for name in names:
        assert pydicom.dcmread(phantom / name).PixelData == pydicom.dcmread(again / name).PixelData
    assert (phantom / "train.csv").read_bytes() == (again / "train.csv").read_bytes()
    other = tmp_path / "other"
    synthesize(other, 1, seed=6, config=CONFIG, progress=False)
    assert not set(names) & {p.name for p in other.glob("*.dcm")}
    first = sorted(other.glob("*.dcm"))[0]
    assert pydicom.dcmread(first).StudyInstanceUID not in set(
        pd.read_csv(phantom / "studies.csv")["study_instance_uid"])


def test_refuses_to_mix_with_an_existing_phantom(phantom: Path, tmp_path: Path) -> None:
    with pytest.raises(OutputExistsError, match="already holds"):
        synthesize(phantom, 1, seed=5, config=CONFIG, progress=False)
    out = tmp_path / "twice"
    synthesize(out, 2, seed=1, config=CONFIG, progress=False)
    synthesize(out, 1, seed=1, config=CONFIG, progress=False, overwrite=True)
    assert len(pd.read_csv(out / "studies.csv")) == len(list((out / "masks").glob("*.npz")))
    assert len(list(out.glob("*.dcm"))) == pd.read_csv(out / "studies.csv")["n_slices"].sum()


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) not installed")
def test_generated_files_are_dciodvfy_clean(phantom: Path) -> None:
    studies = pd.read_csv(phantom / "studies.csv")
    for series_uid in studies["series_instance_uid"]:
        first = np.load(phantom / "masks" / f"{series_uid}.npz")["image_ids"][0]
        result = subprocess.run(["dciodvfy", str(phantom / f"{first}.dcm")], capture_output=True, text=True)
        assert "Error" not in result.stdout + result.stderr, result.stderr


def test_cli_writes_a_phantom_and_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "cli"
    result = runner.invoke(app, ["synth", "-o", str(out), "--studies", "1", "--size", "64", "--seed", "3",
                                 "--slices-per-study", "6", "--quiet", "--boost", "subdural=2"])
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("ID_*.dcm"))) == 6
    assert len(pd.read_csv(out / "train.csv")) == 36
    again = runner.invoke(app, ["synth", "-o", str(out), "--studies", "1", "--size", "64", "--quiet"])
    assert again.exit_code == 1 and "already holds" in again.output
    bad = runner.invoke(app, ["synth", "-o", str(tmp_path / "x"), "--boost", "bleed=3"])
    assert bad.exit_code == 2 and "bleed=3" in bad.output
    assert "Traceback" not in again.output + bad.output
