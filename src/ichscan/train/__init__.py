"""Training: losses, optimisers and schedules, the Lightning module and data module, runs.

``fit(config, fold, resume)`` trains one experiment into a run directory; ``load_model(run_dir)``
loads it back for prediction. Names are imported on first use (PEP 562), so ``ichscan.train.losses``
or ``ichscan.config`` do not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "create_loss": "ichscan.train.losses",
    "create_optimizer": "ichscan.train.optim",
    "create_scheduler": "ichscan.train.optim",
    "DataError": "ichscan.train.datamodule",
    "SliceDataModule": "ichscan.train.datamodule",
    "SliceClassifier": "ichscan.train.module",
    "channel_spec": "ichscan.train.module",
    "LoadedModel": "ichscan.train.run",
    "RunError": "ichscan.train.resolve",
    "ResolvedRun": "ichscan.train.resolve",
    "resolve_run": "ichscan.train.resolve",
    "reference_model_dir": "ichscan.train.resolve",
    "fit": "ichscan.train.run",
    "load_model": "ichscan.train.run",
    "predict_slices": "ichscan.train.run",
    "read_run_config": "ichscan.train.run",
    "run_contract": "ichscan.train.run",
    "write_run_contract": "ichscan.train.run",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from ichscan.train.datamodule import DataError, SliceDataModule
    from ichscan.train.losses import create_loss
    from ichscan.train.module import SliceClassifier, channel_spec
    from ichscan.train.optim import create_optimizer, create_scheduler
    from ichscan.train.resolve import ResolvedRun, RunError, reference_model_dir, resolve_run
    from ichscan.train.run import (
        LoadedModel,
        fit,
        load_model,
        predict_slices,
        read_run_config,
        run_contract,
        write_run_contract,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ichscan.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
