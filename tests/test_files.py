"""`atomic_path` and `atomic_folder`: an output is either the old one or the complete new one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ichscan.files import atomic_folder, atomic_path


def test_atomic_path_renames_on_success_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.parquet"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".parquet" and tmp.parent == target.parent
        tmp.write_text("new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.parquet"]


def test_atomic_folder_replaces_the_whole_folder_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "explain"
    with atomic_folder(target) as staging:
        assert list(staging.iterdir()) == []
        (staging / "a").mkdir()
        (staging / "a" / "1.png").write_text("first")
        assert not target.exists()  # nothing visible before the block ends
    assert (target / "a" / "1.png").read_text() == "first"
    with atomic_folder(target) as staging:
        (staging / "b.png").write_text("second")
    # the earlier run's files are gone, not mixed with the new ones
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == ["b.png"]
    with pytest.raises(RuntimeError), atomic_folder(target) as staging:
        (staging / "c.png").write_text("half")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["b.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explain"]


def test_safe_component_refuses_paths_and_dots() -> None:
    from ichscan.files import is_safe_component, safe_component

    for good in ("1.2.840.113619.2.55", "ID_0a1b", "study-1_2"):
        assert safe_component(good) == good
    for bad in ("..", ".", "", "../x", "/etc", "a/b", "x..y", ".hidden", "a\\b", "x" * 200, "naïve"):
        assert not is_safe_component(bad)
        with pytest.raises(ValueError, match="not usable as a file name"):
            safe_component(bad)


def test_open_regular_refuses_a_fifo_at_once(tmp_path: Path) -> None:
    import os
    import time

    from ichscan.files import NotRegularFile, open_regular

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    start = time.monotonic()
    with pytest.raises(NotRegularFile, match="FIFO"):
        open_regular(fifo)
    assert time.monotonic() - start < 1  # no writer needed: nothing waits
    (tmp_path / "f").write_bytes(b"abc")
    with open_regular(tmp_path / "f") as handle:
        assert handle.read() == b"abc"


def test_stale_temporaries_of_dead_processes_are_removed_and_a_half_swapped_folder_restored(
    tmp_path: Path,
) -> None:
    import os

    from ichscan.files import remove_stale_temporaries

    dead = 2**22 + 12345  # above the default pid_max: never a live process
    (tmp_path / f".a.parquet.{dead}-0123abcd.tmp.parquet").write_text("half")
    (tmp_path / f".b.csv.{os.getpid()}-0123abcd.tmp.csv").write_text("mine, still writing")
    old = tmp_path / f".out.{dead}-89abcdef.old"
    old.mkdir()
    (old / "studies.json").write_text("complete")
    removed = remove_stale_temporaries(tmp_path)
    assert [p.name for p in removed] == [f".a.parquet.{dead}-0123abcd.tmp.parquet"]
    assert (tmp_path / "out" / "studies.json").read_text() == "complete"  # the old result is back
    assert (tmp_path / f".b.csv.{os.getpid()}-0123abcd.tmp.csv").exists()
