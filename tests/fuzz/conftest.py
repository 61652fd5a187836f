"""The fuzz suite: seeded hostile inputs against index, prepare and predict (see corpus.py).

`make test` runs it at scale 1 (seconds); `make fuzz` sets FUZZ_SCALE for thousands of mutants
and many more kills.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
MEASURE = Path(__file__).with_name("measure.py")
ADDRESS_SPACE_CAP = 4 << 30  # the commands run under a 4 GiB address-space cap


def ichscan_command(*args: str) -> list[str]:
    """`python -m ichscan ARGS` with this checkout's sources."""
    return [sys.executable, "-m", "ichscan", *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "250", "PYTHONWARNINGS": "ignore"}


def run_measured(args: list[str], *, timeout: float = 180, cap: int = ADDRESS_SPACE_CAP) -> dict[str, Any]:
    """Run `ichscan ARGS` in a subprocess under `cap` and `timeout`: returncode, seconds,
    peak_rss_mib, stdout, stderr."""
    done = subprocess.run(
        [sys.executable, str(MEASURE), str(cap), str(timeout), *ichscan_command(*args)],
        capture_output=True, text=True, env=environment(), check=True, timeout=timeout + 30,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="session")
def fuzz_scale() -> float:
    return float(os.environ.get("FUZZ_SCALE", "1"))
