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
