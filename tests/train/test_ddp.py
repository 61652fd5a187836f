"""Two CPU processes with DDP (gloo): the scale-out path for the full data set, through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ichscan.labels import LABELS


@pytest.mark.slow
def test_ddp_two_cpu_processes(tiny_cache: Path, tmp_path: Path) -> None:
    config = tmp_path / "ddp.yaml"
    config.write_text(
        "name: ddp\n"
        f"data: {{cache_dir: {tiny_cache}, windows: [brain], split: {{method: patient, n_folds: 5}}}}\n"
        "model: {backbone: resnet18}\n"
        "trainer: {epochs: 2, batch_size: 8, num_workers: 0, accelerator: cpu, devices: 2, strategy: ddp,"
        " progress_bar: false}\n"
        f"output_dir: {tmp_path}\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "ichscan", "train", "--config", str(config)],
                            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stderr + result.stdout
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in log
    run_dir = tmp_path / "ddp" / "fold0"
    metrics = pd.read_csv(run_dir / "metrics.csv")
    # 64 training slices, 8 per process and step, 2 processes: 4 optimiser steps per epoch
    assert metrics["epoch"].tolist() == [0, 1] and metrics["step"].tolist() == [4, 8]
    oof = pd.read_parquet(run_dir / "oof.parquet")
    assert len(oof) == 16 and oof["image_id"].is_unique  # the whole fold once, padding removed
    assert oof[list(LABELS)].notna().all().all()
