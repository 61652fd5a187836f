"""`ichscan prepare` on the command line: the cache, the error list, one-line failures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.prepare import read_series, read_slices


def test_prepare_writes_the_cache_and_lists_bad_files(tmp_path: Path, three_series: pd.DataFrame) -> None:
    manifest = three_series.copy()
    first_series = manifest["series_instance_uid"].iloc[0]
    bad_row = manifest.index[manifest["series_instance_uid"] == first_series][0]
    manifest.loc[bad_row, "path"] = str(tmp_path / "missing.dcm")
    manifest.to_parquet(tmp_path / "manifest.parquet")
    cache = tmp_path / "cache"
    outcome = CliRunner().invoke(
        app, ["prepare", str(tmp_path / "manifest.parquet"), "-o", str(cache), "--size", "24",
              "--workers", "1", "--quiet"]
    )
    assert outcome.exit_code == 3, outcome.output  # slices were lost: not a success
    slices = read_slices(cache)
    assert slices["series_instance_uid"].nunique() == 2
    assert read_series(cache, slices["series_instance_uid"].iloc[0]).shape[1:] == (24, 24)
    errors = pd.read_csv(cache / "errors.csv")
    n_bad = int((manifest["series_instance_uid"] == first_series).sum())
    assert len(errors) == n_bad
    assert f"{tmp_path / 'missing.dcm'}: " in outcome.output
    assert f"{n_bad} slices skipped" in outcome.output
    assert f"Lost {n_bad} of {len(manifest)} slices (list: {cache / 'errors.csv'})" in outcome.output


def test_nothing_cached_exits_1(tmp_path: Path, three_series: pd.DataFrame) -> None:
    manifest = three_series.assign(path=str(tmp_path / "gone.dcm"))
    manifest.to_parquet(tmp_path / "manifest.parquet")
    outcome = CliRunner().invoke(
        app, ["prepare", str(tmp_path / "manifest.parquet"), "-o", str(tmp_path / "c"), "-q", "--workers", "1"]
    )
    assert outcome.exit_code == 1
    assert f"Error: nothing cached: all {len(manifest)} slices of" in outcome.output


def test_an_unwritable_cache_stops_the_run_instead_of_skipping_slices(
    tmp_path: Path, three_series: pd.DataFrame
) -> None:
    """Permission denied on the output is the environment's fault: one line, exit 1, and the
    slices are not listed as skipped."""
    import os

    if os.geteuid() == 0:  # root writes anywhere: simulate with a read-only series folder instead
        import errno

        import ichscan.prepare.series as series_module

        def refuse(*args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        from _pytest.monkeypatch import MonkeyPatch

        patch = MonkeyPatch()
        patch.setattr(series_module.np, "save", refuse)
    else:
        patch = None
    three_series.to_parquet(tmp_path / "manifest.parquet")
    cache = tmp_path / "c"
    (cache / "series").mkdir(parents=True)
    if patch is None:
        (cache / "series").chmod(0o500)
    try:
        outcome = CliRunner().invoke(
            app, ["prepare", str(tmp_path / "manifest.parquet"), "-o", str(cache), "-q", "--workers", "1"]
        )
    finally:
        if patch is not None:
            patch.undo()
        (cache / "series").chmod(0o700)
    assert outcome.exit_code == 1
    assert outcome.output.startswith("Error: cannot write ")
    assert "run stopped" in outcome.output and "skipped" not in outcome.output
    assert "Traceback" not in outcome.output


def test_size_zero_defaults_to_no_crop(tmp_path: Path, three_series: pd.DataFrame) -> None:
    three_series.to_parquet(tmp_path / "manifest.parquet")
    outcome = CliRunner().invoke(
        app, ["prepare", str(tmp_path / "manifest.parquet"), "-o", str(tmp_path / "c"), "--size", "0", "-q"]
    )
    assert outcome.exit_code == 0, outcome.output
    slices = read_slices(tmp_path / "c")
    assert (slices[["crop_y0", "crop_y1", "crop_x0", "crop_x1"]].to_numpy() == [0, 64, 0, 80]).all()


def test_unreadable_or_wrong_manifest_is_one_line_naming_the_file(tmp_path: Path) -> None:
    runner = CliRunner()
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("hello")
    wrong = tmp_path / "wrong.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(wrong)
    for path, reason in ((tmp_path / "absent.parquet", "no such file"),
                         (not_parquet, "cannot read the manifest"),
                         (wrong, "lacks column(s)")):
        outcome = runner.invoke(app, ["prepare", str(path), "-o", str(tmp_path / "cache")])
        assert outcome.exit_code == 2
        assert reason in outcome.output and path.name in outcome.output
        assert "Traceback" not in outcome.output


def test_other_settings_on_an_existing_cache_exit_1(tmp_path: Path, three_series: pd.DataFrame) -> None:
    three_series.to_parquet(tmp_path / "manifest.parquet")
    args = ["prepare", str(tmp_path / "manifest.parquet"), "-o", str(tmp_path / "c"), "-q", "--workers", "1"]
    assert CliRunner().invoke(app, [*args, "--size", "16"]).exit_code == 0
    outcome = CliRunner().invoke(app, [*args, "--size", "32"])
    assert outcome.exit_code == 1
    assert "meta.json" in outcome.output and "size=16" in outcome.output


def test_invert_monochrome1_from_the_command_line(tmp_path: Path) -> None:
    """Exports that stored MONOCHROME1 values inverted are repaired with --invert-monochrome1;
    without it the rescale is applied as the standard says (no inversion)."""
    import numpy as np
    from dicom_factory import write_ct_slice

    from ichscan.dicom import index_folder, write_manifest

    stored = np.full((32, 32), 3000, dtype=np.uint16)  # inverted 12-bit air: 4095 - 3000 = 1095
    stored[8:24, 8:24] = 4095 - 1064  # brain, inverted
    (tmp_path / "d").mkdir()
    for z in range(2):
        write_ct_slice(tmp_path / "d" / f"{z}.dcm", stored, bits_stored=12, photometric="MONOCHROME1", position=(0, 0, 5.0 * z),
                       series_uid="1.2.3", study_uid="1.2")
    write_manifest(index_folder(tmp_path / "d", workers=1, progress=False), tmp_path / "m.parquet")
    plain = CliRunner().invoke(app, ["prepare", str(tmp_path / "m.parquet"), "-o", str(tmp_path / "a"),
                                     "--size", "0", "-q", "--workers", "1"])
    inverted = CliRunner().invoke(app, ["prepare", str(tmp_path / "m.parquet"), "-o", str(tmp_path / "b"),
                                        "--size", "0", "-q", "--workers", "1", "--invert-monochrome1"])
    assert plain.exit_code == 0 and inverted.exit_code == 0, inverted.output
    assert read_series(tmp_path / "a", "1.2.3")[0, 16, 16] == 4095 - 1064 - 1024
    assert read_series(tmp_path / "b", "1.2.3")[0, 16, 16] == 40  # brain
    assert read_series(tmp_path / "b", "1.2.3")[0, 0, 0] == 4095 - 3000 - 1024  # air-ish, -929
    import json

    assert json.loads((tmp_path / "b" / "meta.json").read_text())["invert_monochrome1"] is True
