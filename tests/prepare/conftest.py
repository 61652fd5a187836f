"""Fixtures of the prepare tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from series_factory import head_volume, write_series


@pytest.fixture()
def three_series(tmp_path: Path) -> pd.DataFrame:
    """A manifest of three small series (shuffled rows), written under tmp_path/dicom."""
    frames = [
        write_series(tmp_path / "dicom" / f"s{number}", head_volume(depth=4 + number), seed=number)
        for number in range(3)
    ]
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0)
