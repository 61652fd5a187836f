"""`--dask`: index, prepare and predict on a LocalCluster give what the local pool gives, and a
worker killed in the middle of a series leaves the cache exactly as a clean run."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from run_factory import make_run_dir
from typer.testing import CliRunner

from ichscan.cli import app
from ichscan.dicom import index_folder
from ichscan.parallel import ClusterExecutor, DaskSpec, dask_executor, parse_dask_spec
from ichscan.prepare import prepare_cache, read_slices
from ichscan.prepare.cache import SERIES_DIR


def test_parse_dask_spec() -> None:
    assert parse_dask_spec("local:3") == DaskSpec(local_workers=3)
    assert parse_dask_spec("local").local_workers >= 1
    assert parse_dask_spec("10.0.0.5:8786") == DaskSpec(address="tcp://10.0.0.5:8786")
    assert parse_dask_spec("tls://sched.example.org:8786") == DaskSpec(address="tls://sched.example.org:8786")
    for bad in ("local:0", "local:x", "nowhere", "http//x", ""):
        with pytest.raises(ValueError, match="local:N|N ≥ 1"):
            parse_dask_spec(bad)


def test_bad_dask_spec_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["index", str(tmp_path), "-o", str(tmp_path / "m.parquet"), "--dask", "local:two"])
    assert result.exit_code == 1
    assert "--dask 'local:two': expected local, local:N" in result.output
    assert not (tmp_path / "m.parquet").exists()


@pytest.fixture(scope="module")
def cluster() -> Iterator[ClusterExecutor]:
    """A LocalCluster of 2 single-threaded worker processes (slow to start: shared by the module)."""
    lines: list[str] = []
    with dask_executor("local:2", echo=lines.append) as executor:
        assert executor.n_workers == 2
        assert lines and lines[0].startswith("dask: 2 worker(s), 2 thread(s) at tcp://127.0.0.1:")
        yield executor


def _cache_arrays(cache: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((cache / SERIES_DIR).glob("*.npy"))}


@pytest.mark.slow
def test_index_and_prepare_on_dask_equal_the_local_pool(
    phantom_dir: Path, phantom_manifest: pd.DataFrame, tmp_path: Path, cluster: ClusterExecutor
) -> None:
    on_dask = index_folder(phantom_dir, labels_csv=phantom_dir / "train.csv", progress=False, chunk_size=16, executor=cluster)
    pd.testing.assert_frame_equal(on_dask.manifest, phantom_manifest)
    assert on_dask.manifest["series_instance_uid"].nunique() == 6

    prepare_cache(phantom_manifest, tmp_path / "local", size=32, workers=2, progress=False)
    dask = prepare_cache(phantom_manifest, tmp_path / "dask", size=32, progress=False, executor=cluster)
    assert (dask.prepared, dask.failed, len(dask.errors)) == (6, 0, 0)
    assert _cache_arrays(tmp_path / "dask") == _cache_arrays(tmp_path / "local")  # byte-identical .npy
    pd.testing.assert_frame_equal(read_slices(tmp_path / "dask"), read_slices(tmp_path / "local"))
    # the cluster survives a command: the executor is lent, not shut down
    assert cluster.submit(sum, [1, 2]).result() == 3


@pytest.mark.slow
def test_worker_killed_mid_series_leaves_the_cache_of_a_clean_run(
    phantom_manifest: pd.DataFrame, tmp_path: Path, cluster: ClusterExecutor
) -> None:
    """One worker writes a series' volume to its temporary name, then is SIGKILLed before the
    rename; Dask reruns that series on the restarted worker. The cache must equal a clean run's:
    same arrays byte for byte, same slices table (no duplicate rows), no temporary file left."""
    clean = tmp_path / "clean"
    prepare_cache(phantom_manifest, clean, size=32, workers=1, progress=False)
    marker = tmp_path / "blocked.pid"

    def block_first_write_on_worker() -> None:
        # runs in each worker process: the first series to be written (cluster-wide, claimed with
        # O_EXCL) writes its volume's temporary file, then hangs before the rename, reporting its pid
        from contextlib import contextmanager

        from ichscan.files import atomic_path
        from ichscan.prepare import series

        @contextmanager
        def hanging_atomic_path(path):  # type: ignore[no-untyped-def]
            with atomic_path(path) as tmp:
                yield tmp
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    return
                os.write(fd, f"{os.getpid()} {tmp}".encode())
                os.close(fd)
                time.sleep(60)  # killed long before

        series.atomic_path = hanging_atomic_path

    client = cluster._client
    client.run(block_first_write_on_worker)
    pids_before = set(client.run(os.getpid).values())
    killed: list[int] = []
    leftover: list[bool] = []

    def kill_when_blocked() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text():
                pid_text, tmp = marker.read_text().split(" ", 1)
                leftover.append(Path(tmp).is_file())  # a complete-looking temp volume, never renamed
                os.kill(int(pid_text), signal.SIGKILL)
                killed.append(int(pid_text))
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_when_blocked, daemon=True)
    killer.start()
    crashed = tmp_path / "crashed"
    result = prepare_cache(phantom_manifest, crashed, size=32, progress=False, executor=cluster)
    killer.join(timeout=5)

    assert killed and killed[0] in pids_before and leftover == [True]
    assert (result.prepared, result.failed, len(result.errors)) == (6, 0, 0)
    assert _cache_arrays(crashed) == _cache_arrays(clean)
    slices = read_slices(crashed)
    pd.testing.assert_frame_equal(slices, read_slices(clean))
    assert not slices.duplicated(["sop_instance_uid"]).any()
    hidden = [p.name for p in crashed.rglob(".*")]
    assert hidden == [], f"temporary files left: {hidden}"
    deadline = time.monotonic() + 30  # the nanny restarts the killed worker
    while len(client.nthreads()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids_after = set(client.run(os.getpid).values())
    assert killed[0] not in pids_after and len(pids_after) == 2


@pytest.mark.slow
def test_cli_predict_with_dask_local_gives_the_local_probabilities(phantom_dir: Path, tmp_path: Path) -> None:
    """Through the CLI: `predict --dask local:2` (index and prepare on the cluster) gives the local
    run's probabilities, and prints the cluster line."""
    runner = CliRunner()
    run_dir = make_run_dir(tmp_path / "train", "demo", seed=3)
    probabilities = {}
    for mode in ("local", "dask"):
        extra = ["--dask", "local:2"] if mode == "dask" else ["--workers", "2"]
        out = tmp_path / f"pred-{mode}"
        result = runner.invoke(
            app,
            ["predict", "--model", str(run_dir), str(phantom_dir), "-o", str(out), "--cache", str(tmp_path / mode),
             "--no-progress", *extra],
            env={"COLUMNS": "250"},
        )
        assert result.exit_code == 0, result.output
        assert ("dask: 2 worker(s), 2 thread(s)" in result.output) == (mode == "dask")
        probabilities[mode] = pd.read_parquet(out / "slices.parquet")
    assert len(probabilities["dask"]) == 6 * 12
    pd.testing.assert_frame_equal(probabilities["dask"], probabilities["local"])
    assert _cache_arrays(tmp_path / "dask") == _cache_arrays(tmp_path / "local")
