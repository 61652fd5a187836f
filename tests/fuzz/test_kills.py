"""Kill at any moment: SIGKILL of `ichscan prepare` (and of `ichscan predict`) at random moments,
resuming each time, must end exactly where a clean run ends.

prepare: the final cache is byte-identical to a clean run's, no temporary file is left, and no
worker process outlives its killed parent (workers die with it: `ichscan.files.die_with_parent`).
predict over an earlier run's output folder: after every kill the folder is the old complete
result or the new complete one, never a mix, and it holds no temporary cache.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from conftest import environment, ichscan_command
from corpus import _series, scaled

from ichscan.dicom import index_folder, write_manifest

PREPARE_SERIES = 40  # 100 when FUZZ_SCALE > 1 (`make fuzz`)
PREPARE_KILLS = 4  # × FUZZ_SCALE
PREDICT_KILLS = 1  # × FUZZ_SCALE


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ichscan_command(*args), env=environment(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def kill_at_random(
    args: list[str], rng: random.Random, latest: float, *, after_workers: bool = False
) -> tuple[bool, list[psutil.Process]]:
    """Start `ichscan ARGS`, SIGKILL it after a random delay (with `after_workers`, a random
    delay after its worker processes appeared); (was it still running, its descendants at the
    moment of the kill)."""
    process = subprocess.Popen(ichscan_command(*args), env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + rng.uniform(min(0.3, latest), latest)
    extra = rng.uniform(0.0, 0.6)
    descendants: list[psutil.Process] = []
    while process.poll() is None:
        try:
            descendants = psutil.Process(process.pid).children(recursive=True) or descendants
        except psutil.NoSuchProcess:
            break
        if after_workers and descendants and deadline > time.monotonic() + extra:
            deadline = time.monotonic() + extra  # workers are up: kill them mid-work
        if time.monotonic() >= deadline and (not after_workers or descendants):
            break
        time.sleep(0.01)
    running = process.poll() is None
    if running:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return running, descendants


def survivors(processes: list[psutil.Process]) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=5)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_prepare_killed_at_random_moments_resumes_to_the_clean_cache(tmp_path: Path, fuzz_scale: float) -> None:
    rng_pixels = np.random.default_rng(3)
    for k in range(PREPARE_SERIES if fuzz_scale <= 1 else 100):
        _series(tmp_path / "dicom" / f"s{k:03d}", f"s{k:03d}", 4, rng_pixels)
    manifest = tmp_path / "manifest.parquet"
    write_manifest(index_folder(tmp_path / "dicom", workers=1, progress=False), manifest)
    args = ["prepare", str(manifest), "--size", "24", "--workers", "2", "-q", "-o"]
    start = time.monotonic()
    clean = run([*args, str(tmp_path / "clean")])
    duration = time.monotonic() - start  # kills land anywhere in a run this long
    assert clean.returncode == 0, clean.stderr

    rng = random.Random(15)
    cache = tmp_path / "cache"
    kills = with_workers = 0
    for attempt in range(scaled(PREPARE_KILLS)):  # every other kill waits for the workers
        running, workers = kill_at_random([*args, str(cache)], rng, latest=0.9 * duration,
                                          after_workers=attempt % 2 == 1)
        kills += running
        with_workers += bool(workers)
        assert survivors(workers) == [], "worker processes outlived their killed parent"
    assert kills >= 1 and with_workers >= 1  # kills landed while prepare and its workers ran
    print(f"prepare: {kills} SIGKILLs landed ({with_workers} with workers running) over {len(list((tmp_path / 'dicom').iterdir()))} series")
    resumed = run([*args, str(cache)])
    assert resumed.returncode == 0, resumed.stderr
    assert files_of(cache) == files_of(tmp_path / "clean")  # byte for byte, no temporary left
    assert not [p for p in cache.rglob(".*")]


@pytest.mark.slow
def test_predict_killed_over_an_earlier_output_leaves_old_or_new_never_a_mix(tmp_path: Path) -> None:
    from run_factory import make_run_dir

    rng_pixels = np.random.default_rng(4)
    for k in range(3):
        _series(tmp_path / "dicom" / f"s{k}", f"s{k}", 5, rng_pixels)
    model = make_run_dir(tmp_path / "train", "demo", seed=1)
    base = ["predict", "--model", str(model), str(tmp_path / "dicom"), "--no-progress", "--workers", "1"]
    out = tmp_path / "out"
    start = time.monotonic()
    assert run([*base, "-o", str(out), "--explain"]).returncode == 0  # the earlier, old result
    duration = time.monotonic() - start
    old = files_of(out)
    new_args = [*base, "--top-k", "2", "--threshold", "0.3", "-o", str(out)]

    rng = random.Random(16)
    seen = []
    landed = 0
    for _ in range(scaled(PREDICT_KILLS)):
        landed += kill_at_random(new_args, rng, latest=duration)[0]
        seen.append(files_of(out))
        assert not list(out.glob(".cache-*"))  # the temporary cache never sits in OUT
    finished = run(new_args)
    assert finished.returncode == 0, finished.stderr
    new = files_of(out)
    assert old != new
    assert all(state in (old, new) for state in seen), "the output folder mixed two runs"
    print(f"predict: {landed} SIGKILLs landed; states after them: {sum(s == old for s in seen)} old, {sum(s == new for s in seen)} new")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []  # debris removed
