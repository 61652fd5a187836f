"""The resampling spacing of `prepare --spacing` is part of the input contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ichscan.data.contract import ContractError, InputContract


def _cache(tmp_path: Path, **meta: object) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "meta.json").write_text(json.dumps({"size": 64, "crop": True, "version": 2, **meta}))
    return tmp_path


def test_a_cache_resampled_otherwise_is_refused(tmp_path: Path) -> None:
    resampled = InputContract.build(cache_size=64, crop=True, windows=("brain",), offsets=(0,), spacing=1.0)
    plain = InputContract.build(cache_size=64, crop=True, windows=("brain",), offsets=(0,))
    resampled.check_cache(_cache(tmp_path / "a", spacing=1.0))
    plain.check_cache(_cache(tmp_path / "b"))
    with pytest.raises(ContractError, match=r"ichscan prepare --size 64 --spacing 1`"):
        resampled.check_cache(_cache(tmp_path / "c"))
    with pytest.raises(ContractError, match="spacing=0.5"):
        plain.check_cache(_cache(tmp_path / "d", spacing=0.5))
    assert InputContract.from_json(resampled.to_json()).spacing == 1.0
