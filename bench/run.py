"""Run the benchmarks with exactly the arguments docs/BENCHMARKS.md quotes, stamp each section.

`BENCHES` is the one table of benchmark arguments: `make bench` runs every entry (or the names
given on the command line), then `bench/collect.py` gathers docs/bench/*.md into
docs/BENCHMARKS.md. Each section gets a line naming the commit it measured, the date and the
machine, so a stale section is visible at a glance.

    .venv/bin/python bench/run.py [NAME ...]      # e.g. bench/run.py prepare loader
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "bench"
STAMP = "Measured at commit"

# name → (script, arguments). A script that writes its own report gets `--out`/`-o` here; one that
# only prints has its standard output written to docs/bench/<name>.md.
BENCHES: dict[str, tuple[str, list[str]]] = {
    "index": ("bench_index.py", ["--files", "3000", "-o", "docs/bench/index.md"]),
    "prepare": ("bench_prepare.py", ["--series", "20", "--big-series", "80", "--slices", "32", "--workers", "2",
                                     "--against", "815b6d7", "--out", "docs/bench/prepare.md"]),
    "loader": ("bench_loader.py", ["--out", "docs/bench/loader.md"]),
    "phantom": ("bench_phantom.py", ["--speed-studies", "8", "--baseline-studies", "150", "--prevalence-studies",
                                     "100", "--size", "128", "--seed", "2024", "--out", "docs/bench/phantom.md"]),
    "model": ("bench_model.py", ["--out", "docs/bench/model.md"]),
    "train": ("bench_train.py", ["--out", "docs/bench/train.md"]),
    "predict": ("bench_predict.py", ["--repeats", "3", "--out", "docs/bench/predict.md"]),
    "hardening": ("bench_hardening.py", ["--out", "docs/bench/hardening.md"]),
    "stage2": ("bench_stage2.py", ["--work", "/tmp/ichscan-bench-stage2", "--train-studies", "200",
                                   "--holdout-studies", "30", "--epochs", "4", "--simclr-epochs", "3"]),
}


def machine() -> str:
    """CPU model, cores and whether the CPU computes bf16 natively (it changes training speed)."""
    flags = model = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                      if line.startswith("model name")), "")
        flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    except OSError:
        pass
    bf16 = "AVX-512 BF16" if "avx512_bf16" in flags else "no AVX-512 BF16"
    return f"{model or platform.processor()}, {os.cpu_count()} cores, {bf16}, Python {platform.python_version()}"


def commit() -> str:
    """The short commit hash, marked when the work tree has uncommitted changes."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    return head.stdout.strip() + (" + uncommitted changes" if dirty else "")


def stamp(report: Path, line: str) -> None:
    """Put `line` right under the report's first heading, replacing an earlier stamp."""
    lines = [ln for ln in report.read_text().splitlines() if not ln.startswith(STAMP)]
    at = next((i + 1 for i, ln in enumerate(lines) if ln.startswith("#")), 0)
    lines[at:at] = ["", line, ""]
    report.write_text(re.sub(r"\n{3,}", "\n\n", "\n".join(lines).rstrip() + "\n"))


def run(name: str) -> None:
    """Run one benchmark from the table and stamp its report."""
    script, args = BENCHES[name]
    command = [sys.executable, str(ROOT / "bench" / script), *args]
    print(f"bench {name}: {' '.join(command[1:])}", flush=True)
    writes_itself = any(a in ("--out", "-o") for a in args)
    result = subprocess.run(command, cwd=ROOT, stdout=None if writes_itself else subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench {name} failed with status {result.returncode}")
    report = DOCS / f"{name}.md"
    if not writes_itself:
        report.write_text(result.stdout)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    stamp(report, f"{STAMP} `{commit()}` on {date}; machine: {machine()}.")


def main(names: list[str]) -> None:
    unknown = sorted(set(names) - set(BENCHES))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    for name in names or list(BENCHES):
        run(name)


if __name__ == "__main__":
    main(sys.argv[1:])
