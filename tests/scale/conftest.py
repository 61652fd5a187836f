"""Fixtures of the scale tests: a small phantom data set, indexed once per session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ichscan.phantom import PhantomConfig, synthesize


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six phantom studies at 64² (DICOM, labels, masks), all storage kinds."""
    out = tmp_path_factory.mktemp("phantom")
    config = PhantomConfig(size=64, slices_per_series=12, positive_fraction=0.7, second_series_fraction=0.0)
    synthesize(out, n_studies=6, seed=3, config=config, progress=False)
    return out


@pytest.fixture(scope="session")
def phantom_manifest(phantom_dir: Path) -> pd.DataFrame:
    """The local (process pool) index of `phantom_dir`."""
    from ichscan.dicom import index_folder

    return index_folder(phantom_dir, labels_csv=phantom_dir / "train.csv", workers=1, progress=False).manifest
