"""`resolve_run`: one meaning of a run directory for every command (fold folder, run folder, reference)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ichscan.train.resolve import REFERENCE_ENV, RunError, reference_model_dir, resolve_run


def fake_run(root: Path, name: str, fold: int, *, finished: bool = True, stage2: bool = False) -> Path:
    run = root / name / f"fold{fold}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\n" + ("kind: two_stage\n" if stage2 else ""))
    if finished:
        (run / "checkpoints" / "best.ckpt").write_bytes(b"x")
    return run


def test_fold_folder_run_folder_and_one_fold(tmp_path: Path) -> None:
    folds = [fake_run(tmp_path, "cv", k) for k in (0, 1, 10, 2)]
    one = resolve_run(folds[0])
    assert one.folds == (folds[0],) and one.stage == 1 and one.name == "cv/fold0"
    every = resolve_run(tmp_path / "cv")
    assert every.folds == (folds[0], folds[1], folds[3], folds[2])  # numeric order: 0, 1, 2, 10
    assert every.name == "cv" and resolve_run(str(tmp_path / "cv"), fold=10).folds == (folds[2],)
    with pytest.raises(RunError, match=r"cv: no fold 3 \(folds: 0, 1, 2, 10\)"):
        resolve_run(tmp_path / "cv", fold=3)
    with pytest.raises(RunError, match="fold0: is fold 0, not fold 1"):
        resolve_run(folds[0], fold=1)
    with pytest.raises(RunError, match=r"cv: 4 folds \(0, 1, 2, 10\); explain uses one network: choose one with --fold K"):
        every.single("explain")
    assert resolve_run(tmp_path / "cv", fold=1).single() == folds[1]


def test_stage_two_and_unfinished_and_non_runs(tmp_path: Path) -> None:
    seq = fake_run(tmp_path, "seq", 0, stage2=True)
    assert resolve_run(tmp_path / "seq").stage == 2 and resolve_run(seq).stage == 2
    fake_run(tmp_path, "seq", 1)
    with pytest.raises(RunError, match="seq: mixes stage-1 and stage-2 folds"):
        resolve_run(tmp_path / "seq")
    training = fake_run(tmp_path, "busy", 0, finished=False)
    with pytest.raises(RunError, match=r"fold0: not a finished run \(no checkpoints/best.ckpt\)"):
        resolve_run(tmp_path / "busy")
    assert resolve_run(training, finished=False).folds == (training,)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match=r"empty: not an ichscan run \(no config.yaml, no fold\*/config.yaml\)"):
        resolve_run(tmp_path / "empty")
    with pytest.raises(RunError, match="missing: no such run directory"):
        resolve_run(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(RunError, match="file.txt: not a run directory"):
        resolve_run(tmp_path / "file.txt")


def test_reference_is_the_shipped_model_or_the_environment_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ichscan

    monkeypatch.delenv(REFERENCE_ENV, raising=False)
    assert reference_model_dir() == Path(ichscan.__file__).resolve().parents[2] / "models" / "reference"
    monkeypatch.setenv(REFERENCE_ENV, str(tmp_path / "nothing"))
    with pytest.raises(RunError, match=f"nothing: the reference model is not installed here \\(set {REFERENCE_ENV}"):
        resolve_run("reference")
    run = fake_run(tmp_path, "ref", 0)
    monkeypatch.setenv(REFERENCE_ENV, str(tmp_path / "ref"))
    assert resolve_run("reference").folds == (run,)
