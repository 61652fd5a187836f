"""`ichscan train`: thin CLI over fit; bad input is one line naming the file and the reason."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from ichscan.cli import app

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "recipes" / "seed002_resnet18.yaml"


def test_train_smoke_recipe_through_the_cli(tiny_cache: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "train", "--config", str(RECIPE), "--smoke", "--fold", "1",
        "--set", f"data.cache_dir={tiny_cache}", "--set", f"output_dir={tmp_path}",
        "--set", "trainer.progress_bar=false",
    ])
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "seed002_resnet18-smoke" / "fold1"
    assert f"run directory: {run_dir}" in result.output.replace("\n", "")
    oof = pd.read_parquet(run_dir / "oof.parquet")
    assert (oof["fold"] == 1).all()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", *args])
    return result.exit_code, result.output


def test_bad_config_key_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("name: x\ntrainer:\n  epochz: 3\n")
    code, output = invoke("--config", str(config))
    assert code == 1
    assert "bad.yaml: trainer.epochz: Extra inputs are not permitted" in output.replace("\n", "")
    assert "Traceback" not in output


def test_bad_override_and_missing_cache(tmp_path: Path) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(f"name: x\ndata:\n  cache_dir: {tmp_path / 'nowhere'}\noutput_dir: {tmp_path}\n")
    code, output = invoke("--config", str(config), "--set", "trainer.epochs=zero")
    assert code == 1 and "trainer.epochs: Input should be a valid integer" in output
    code, output = invoke("--config", str(config))
    assert code == 1 and "nowhere" in output and "ichscan prepare" in output.replace("\n", " ")
    code, output = invoke("--config", str(config), "--fold", "7")
    assert code == 1 and "fold 7: must be in 0..4" in output
    code, output = invoke("--config", str(tmp_path / "absent.yaml"))
    assert code == 1 and "absent.yaml: cannot read" in output
