"""Fixtures of the training tests: a tiny Hounsfield cache (see `train_cache.make_cache`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from train_cache import make_cache


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_cache(tmp_path_factory.mktemp("train"))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
