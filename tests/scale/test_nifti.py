"""NIfTI volumes in, like DICOM: the same HU, orientation, order and spacing as the DICOM series
they were written from, whatever the affine (standard, flipped axes, oblique), and masks → labels."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nifti_factory import dicom_series, flipped, write_volume
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.dicom import index_folder
from ichscan.labels import LABELS
from ichscan.nifti import from_axial, read_geometry, read_hounsfield
from ichscan.nifti.index import index_inputs, nifti_uid
from ichscan.phantom import PhantomConfig, synthesize
from ichscan.prepare import prepare_cache, read_series, read_slices

VARIANTS: dict[str, dict[str, object]] = {
    "plain": {},
    "flipped": {"flip": (True, False, True)},  # stored right→left and head→feet
    "oblique": {"rotate_degrees": 12.0, "flip": (False, True, False)},
    "scaled": {"slope": 0.5, "intercept": -1024.0, "dtype": np.uint16},  # HU = stored/2 − 1024
}


@pytest.fixture(scope="module")
def dicom_phantom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """Two untilted phantom studies (64², 10 slices) and their manifest."""
    out = tmp_path_factory.mktemp("nifti-phantom")
    config = PhantomConfig(
        size=64, slices_per_series=10, positive_fraction=1.0, second_series_fraction=0.0, tilted_fraction=0.0
    )
    synthesize(out, n_studies=2, seed=5, config=config, progress=False)
    return out, index_folder(out, workers=1, progress=False).manifest


def label_map(bits: np.ndarray) -> np.ndarray:
    """Bit-coded phantom masks → one subtype value per voxel (the highest bit set), 0 = none."""
    values = np.zeros(bits.shape, dtype=np.uint8)
    for value in range(1, len(LABELS)):
        values[(bits & (1 << (value - 1))) > 0] = value
    return values


@pytest.fixture(scope="module")
def nifti_tree(dicom_phantom: tuple[Path, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<variant>/<series>.nii.gz for every series and variant, and masks/<variant>/<series>.nii.gz."""
    dicom_dir, manifest = dicom_phantom
    root = tmp_path_factory.mktemp("nifti")
    for number, series_uid in enumerate(sorted(manifest["series_instance_uid"].unique())):
        hu, affine = dicom_series(manifest, series_uid)
        bits = np.load(dicom_dir / "masks" / f"{series_uid}.npz")["mask"]
        for variant, options in VARIANTS.items():
            name = f"{variant}/s{number}.nii.gz"
            write_volume(root / "volumes" / name, hu, affine, **options)  # type: ignore[arg-type]
            flip = options.get("flip", (False, False, False))
            written = nib.load(root / "volumes" / name)
            # the mask on the written image's grid: same flips, same (maybe rotated) affine
            labels, _ = flipped(label_map(bits).transpose(2, 1, 0), affine, flip)  # type: ignore[arg-type]
            (root / "masks" / name).parent.mkdir(parents=True, exist_ok=True)
            nib.Nifti1Image(labels, written.affine).to_filename(root / "masks" / name)
    return root


def test_volume_reads_as_its_dicom_series(dicom_phantom: tuple[Path, pd.DataFrame], nifti_tree: Path) -> None:
    _, manifest = dicom_phantom
    for number, series_uid in enumerate(sorted(manifest["series_instance_uid"].unique())):
        hu, _affine = dicom_series(manifest, series_uid)
        dicom_rows = manifest[manifest["series_instance_uid"] == series_uid].sort_values("slice_index")
        for variant in VARIANTS:
            path = nifti_tree / "volumes" / variant / f"s{number}.nii.gz"
            volume, geometry = read_hounsfield(path)
            np.testing.assert_array_equal(volume, hu, err_msg=variant)  # HU, orientation and order
            assert (geometry.rows, geometry.columns, geometry.depth) == hu.shape[1:] + hu.shape[:1]
            assert geometry.pixel_spacing_row == pytest.approx(float(dicom_rows["pixel_spacing_row"].iloc[0]))
            assert geometry.pixel_spacing_col == pytest.approx(float(dicom_rows["pixel_spacing_col"].iloc[0]))
            assert np.all(np.diff(geometry.positions) > 0)  # feet → head
            if variant != "oblique":  # a rotation about S keeps positions along S
                np.testing.assert_allclose(geometry.positions, dicom_rows["position"], atol=1e-4)
            # heatmaps go back onto the stored grid with the inverse
            stored = np.asanyarray(nib.load(path).dataobj.get_unscaled())
            back = from_axial(volume, nib.load(path).affine)
            np.testing.assert_array_equal(back, np.round(stored * geometry.slope + geometry.intercept))


def test_index_and_prepare_nifti_match_dicom(
    dicom_phantom: tuple[Path, pd.DataFrame], nifti_tree: Path, tmp_path: Path
) -> None:
    _, manifest = dicom_phantom
    result = index_inputs(nifti_tree / "volumes", masks_dir=nifti_tree / "masks", masks_out=tmp_path / "masks", progress=False)
    n_series = manifest["series_instance_uid"].nunique()
    assert result.errors.empty, result.errors
    assert result.n_files == len(VARIANTS) * n_series and result.skipped == []
    nifti = result.manifest
    assert len(nifti) == len(VARIANTS) * len(manifest)
    key = "plain/s0.nii.gz"
    first = nifti[nifti["series_instance_uid"] == nifti_uid("series", key)]
    assert list(first["slice_index"]) == list(range(10)) and first["image_id"].iloc[3] == "plain_s0_z003"
    assert first["patient_id"].iloc[0] == "plain/s0"

    dicom_cache = prepare_cache(manifest, tmp_path / "dicom-cache", size=32, workers=1, progress=False)
    nifti_cache = prepare_cache(nifti, tmp_path / "nifti-cache", size=32, workers=1, progress=False)
    assert nifti_cache.errors.empty and nifti_cache.prepared == len(VARIANTS) * n_series
    dicom_slices = read_slices(tmp_path / "dicom-cache")
    for number, series_uid in enumerate(sorted(manifest["series_instance_uid"].unique())):
        expected = read_series(tmp_path / "dicom-cache", series_uid)
        box = dicom_slices.loc[dicom_slices["series_instance_uid"] == series_uid, ["crop_y0", "crop_x0"]].iloc[0]
        for variant in VARIANTS:
            uid = nifti_uid("series", f"{variant}/s{number}.nii.gz")
            np.testing.assert_array_equal(read_series(tmp_path / "nifti-cache", uid), expected, err_msg=variant)
            mine = nifti_cache.slices[nifti_cache.slices["series_instance_uid"] == uid]
            assert tuple(mine[["crop_y0", "crop_x0"]].iloc[0]) == tuple(box)
            # masks: labels per slice and the bit-coded mask in anatomical order, as the phantom's
            written = np.load(tmp_path / "masks" / f"{uid}.npz")
            values = label_map(np.load(dicom_phantom[0] / "masks" / f"{series_uid}.npz")["mask"])
            np.testing.assert_array_equal(written["mask"], np.where(values > 0, 1 << (values.astype(np.int32) - 1), 0))
            assert list(written["image_ids"]) == list(mine.sort_values("slice_index")["image_id"])
            rows = nifti[nifti["series_instance_uid"] == uid].sort_values("slice_index")
            for value, label in enumerate(LABELS[1:], start=1):
                np.testing.assert_array_equal(rows[label].to_numpy(), (values == value).any(axis=(1, 2)).astype(np.float32))
            np.testing.assert_array_equal(rows["any"].to_numpy(), (values > 0).any(axis=(1, 2)).astype(np.float32))
    assert dicom_cache.errors.empty


def test_bad_volumes_are_one_line_errors(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    good = write_volume(folder / "good.nii.gz", np.zeros((4, 8, 8), np.int16), np.eye(4))
    raw = gzip.decompress(good.read_bytes())
    (folder / "truncated.nii").write_bytes(raw[: len(raw) // 2])  # header claims more than the file holds
    (folder / "garbage.nii.gz").write_bytes(b"not a nifti file at all")
    huge = nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4))
    huge.header.set_data_shape((5000, 5000, 5000))
    (folder / "huge.nii").write_bytes(huge.header.binaryblock + b"\0" * 64)
    result = index_inputs(folder, progress=False)
    reasons = dict(zip(result.errors["path"].map(lambda p: Path(p).name), result.errors["reason"]))
    assert set(reasons) == {"truncated.nii", "garbage.nii.gz", "huge.nii"}
    assert "truncated" in reasons["truncated.nii"]
    assert "not a readable NIfTI file" in reasons["garbage.nii.gz"]
    assert "outside 1…4096" in reasons["huge.nii"]
    assert all("\n" not in reason for reason in reasons.values())
    assert result.manifest["path"].map(lambda p: Path(p).name).unique().tolist() == ["good.nii.gz"]
    with pytest.raises(ValueError, match="truncated"):
        read_geometry(folder / "truncated.nii")


def test_cli_index_prepare_and_predict_a_volume(nifti_tree: Path, dicom_phantom: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    """`ichscan index DIR --masks M`, `prepare`, and `predict` on one .nii.gz: the probabilities of
    the DICOM series it was written from."""
    from run_factory import make_run_dir

    runner = CliRunner()
    out = tmp_path / "out" / "manifest.parquet"
    result = runner.invoke(
        app,
        ["index", str(nifti_tree / "volumes" / "flipped"), "--masks", str(nifti_tree / "masks" / "flipped"),
         "-o", str(out), "--no-progress"],
        env={"COLUMNS": "250"},
    )
    assert result.exit_code == 0, result.output
    manifest = pd.read_parquet(out)
    assert manifest["series_instance_uid"].nunique() == 2 and not manifest["any"].isna().any()
    assert len(list((tmp_path / "out" / "masks").glob("*.npz"))) == 2
    result = runner.invoke(app, ["prepare", str(out), "-o", str(tmp_path / "cache"), "--size", "32", "-q"])
    assert result.exit_code == 0, result.output

    dicom_dir, dicom_manifest = dicom_phantom
    series_uid = min(dicom_manifest["series_instance_uid"].unique())
    study = dicom_manifest.loc[dicom_manifest["series_instance_uid"] == series_uid, "study_instance_uid"].iloc[0]
    run_dir = make_run_dir(tmp_path / "train", "demo", seed=3)
    volume = nifti_tree / "volumes" / "oblique" / "s0.nii.gz"
    result = runner.invoke(app, ["predict", "--model", str(run_dir), str(volume), "-o", str(tmp_path / "p-nii"), "--no-progress"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["predict", "--model", str(run_dir), str(dicom_dir), "-o", str(tmp_path / "p-dcm"), "--no-progress"])
    assert result.exit_code == 0, result.output
    nii = pd.read_parquet(tmp_path / "p-nii" / "slices.parquet").sort_values("slice_index")
    dcm = pd.read_parquet(tmp_path / "p-dcm" / "slices.parquet")
    dcm = dcm[dcm["study_instance_uid"] == study].sort_values("slice_index")
    probabilities = [column for column in nii.columns if column in LABELS or column.startswith("prob_")]
    assert probabilities
    np.testing.assert_allclose(nii[probabilities].to_numpy(), dcm[probabilities].to_numpy(), atol=1e-6)
    assert nii["series_instance_uid"].iloc[0] == nifti_uid("series", "s0.nii.gz")  # key: the file name


def test_cache_grid_arrays_go_back_onto_the_input_volume(nifti_tree: Path, tmp_path: Path) -> None:
    """A cache-grid array written with `write_aligned` lands voxel for voxel on the input: the
    cached HU of a cropped (not resized) cache come back as the input's HU inside the box."""
    from ichscan.nifti.aligned import to_source_matrix, write_aligned

    volume_path = nifti_tree / "volumes" / "oblique" / "s1.nii.gz"
    manifest = index_inputs(volume_path, progress=False).manifest
    prepare_cache(manifest, tmp_path / "cache", size=0, crop=True, workers=1, progress=False)
    slices = read_slices(tmp_path / "cache")
    uid = slices["series_instance_uid"].iloc[0]
    box = tuple(slices[["crop_y0", "crop_y1", "crop_x0", "crop_x1"]].iloc[0])
    cached = read_series(tmp_path / "cache", uid).astype(np.float32)
    geometry = read_geometry(volume_path)
    back = to_source_matrix(cached, box, (geometry.rows, geometry.columns), fill=-5000.0)
    write_aligned(back, volume_path, tmp_path / "heat.nii.gz")

    written, original = nib.load(tmp_path / "heat.nii.gz"), nib.load(volume_path)
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
    stored_hu = np.asanyarray(original.dataobj)
    data = np.asanyarray(written.dataobj)
    inside = data != -5000.0
    assert inside.any() and (~inside).any()  # the head box is smaller than the matrix
    np.testing.assert_array_equal(data[inside], np.clip(np.round(stored_hu[inside]), -1024, None))
    with pytest.raises(ValueError, match="do not match"):
        write_aligned(back[:-1], volume_path, tmp_path / "bad.nii.gz")
