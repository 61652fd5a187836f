"""Gather the per-area benchmark reports (docs/bench/*.md) into docs/BENCHMARKS.md."""

from __future__ import annotations

import sys
from pathlib import Path

from ichscan.files import atomic_path

ORDER = ("index", "prepare", "dask", "loader", "phantom", "model", "train", "predict", "demo", "stage2")

HEADER = """# Benchmarks

Every number below was measured on this project's reference machine (2 CPU cores, x86_64,
24 GiB, no GPU) with the command quoted in its section; `make bench` re-runs all of them and
rebuilds this file from `docs/bench/*.md`. Ratios compare ichscan with a naive baseline measured
in the same run. Where a section says the machine was shared with other jobs, its absolute
figures are low and its ratios are the part to trust.
"""


def collect(folder: Path, target: Path) -> None:
    """Write `target` from the Markdown reports in `folder`, in pipeline order."""
    reports = {path.stem: path for path in folder.glob("*.md")}
    ordered = [name for name in ORDER if name in reports] + sorted(set(reports) - set(ORDER))
    parts = [HEADER] + [reports[name].read_text().strip() + "\n" for name in ordered]
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(parts))


if __name__ == "__main__":
    collect(Path(sys.argv[1]), Path(sys.argv[2]))
