"""What a run directory means, the same for every command (`predict`, `explain`, `embed`, `compare`, …).

A name given as ``--model`` / ``RUN`` is resolved by `resolve_run` with one rule:

- ``reference``: the shipped reference model, ``<repository>/models/reference/`` (found from the
  package's source folder; the environment variable ``ICHSCAN_REFERENCE_MODEL`` overrides it);
- a **fold folder** (holds ``config.yaml``): that one run;
- a **run folder** (``output_dir/name``, holding ``fold<k>/`` runs): all its folds, a k-fold
  ensemble, or only ``fold<K>`` when a fold is asked for (``--fold K``);
- stage 1 (`ichscan train`) and stage 2 (`ichscan train-seq`: ``config.yaml`` has ``kind``) alike.

A fold counts only when it is finished (``checkpoints/best.ckpt`` exists). Anything else is a
`RunError` with one line naming the folder and the reason. This module imports neither torch nor
Lightning, so a command can check its arguments before loading them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import yaml

__all__ = [
    "REFERENCE_ENV",
    "REFERENCE_NAME",
    "ResolvedRun",
    "RunError",
    "reference_model_dir",
    "resolve_run",
    "run_stage",
    "stage1_run",
]

REFERENCE_NAME: Final[str] = "reference"
REFERENCE_ENV: Final[str] = "ICHSCAN_REFERENCE_MODEL"
CONFIG_FILE: Final[str] = "config.yaml"
BEST_CHECKPOINT: Final[str] = "checkpoints/best.ckpt"
_FOLD: Final[re.Pattern[str]] = re.compile(r"^fold(\d+)$")

Stage = Literal[1, 2]


class RunError(RuntimeError):
    """A run directory that cannot be used as asked; the message names it and the reason."""


@dataclass(frozen=True)
class ResolvedRun:
    """A resolved ``--model``: the finished fold runs it stands for (ascending fold) and its stage."""

    source: Path
    folds: tuple[Path, ...]
    stage: Stage

    @property
    def name(self) -> str:
        """``<run>/fold<k>`` for one fold, the run folder's name for several."""
        if len(self.folds) == 1 and _FOLD.match(self.folds[0].name):
            return f"{self.folds[0].parent.name}/{self.folds[0].name}"
        return self.source.name

    def single(self, command: str = "this command") -> Path:
        """The one fold run; RunError asking for ``--fold K`` when there are several."""
        if len(self.folds) == 1:
            return self.folds[0]
        numbers = ", ".join(str(fold_number(p)) for p in self.folds)
        raise RunError(f"{self.source}: {len(self.folds)} folds ({numbers}); {command} uses one network: "
                       "choose one with --fold K")


def fold_number(path: Path) -> int | None:
    """K of a ``fold<K>`` folder, None for any other name."""
    match = _FOLD.match(Path(path).name)
    return int(match.group(1)) if match else None


def reference_model_dir() -> Path:
    """The shipped reference model: ``$ICHSCAN_REFERENCE_MODEL`` or ``<repository>/models/reference``."""
    override = os.environ.get(REFERENCE_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "models" / REFERENCE_NAME


def run_stage(run_dir: Path) -> Stage:
    """2 for a `train-seq` run (its ``config.yaml`` has ``kind``), 1 for an `ichscan train` run."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RunError(f"{path}: cannot read the run's config ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict):
        raise RunError(f"{path}: not a run config")
    return 2 if raw.get("kind") in ("two_stage", "cnn_lstm") else 1


def _finished(run_dir: Path) -> None:
    if not (run_dir / BEST_CHECKPOINT).is_file():
        raise RunError(f"{run_dir}: not a finished run (no {BEST_CHECKPOINT}); has training ended?")


def resolve_run(name: str | Path, fold: int | None = None, *, finished: bool = True) -> ResolvedRun:
    """Resolve a run folder, a fold folder or ``reference`` (module docstring) to its finished folds.

    `fold`: keep only ``fold<K>`` (for a fold folder it must be that fold). ``finished=False``
    (only `ichscan compare`, which also reads runs still training) keeps folds without best.ckpt.
    """
    if str(name) == REFERENCE_NAME:
        path = reference_model_dir()
        if not path.is_dir():
            raise RunError(f"{path}: the reference model is not installed here (set {REFERENCE_ENV} to its folder)")
    else:
        path = Path(name)
    if not path.exists():
        raise RunError(f"{path}: no such run directory")
    if not path.is_dir():
        raise RunError(f"{path}: not a run directory (a folder of `ichscan train` or `train-seq`)")
    if (path / CONFIG_FILE).is_file():
        number = fold_number(path)
        if fold is not None and number is not None and number != fold:
            raise RunError(f"{path}: is fold {number}, not fold {fold}")
        folds = [path]
    else:
        found = {fold_number(p): p for p in path.iterdir() if fold_number(p) is not None and (p / CONFIG_FILE).is_file()}
        if not found:
            raise RunError(f"{path}: not an ichscan run (no {CONFIG_FILE}, no fold*/{CONFIG_FILE})")
        if fold is not None:
            if fold not in found:
                raise RunError(f"{path}: no fold {fold} (folds: {', '.join(str(k) for k in sorted(found))})")
            folds = [found[fold]]
        else:
            folds = [found[k] for k in sorted(found)]  # type: ignore[type-var]
    for run in folds if finished else ():
        _finished(run)
    stages = {run_stage(run) for run in folds}
    if len(stages) > 1:
        raise RunError(f"{path}: mixes stage-1 and stage-2 folds")
    return ResolvedRun(source=path, folds=tuple(folds), stage=stages.pop())


def stage1_run(run_dir: Path) -> Path:
    """The stage-1 run whose network explains (or embeds for) `run_dir`: the run itself at stage 1,
    the run named in ``stage1.json`` at stage 2; RunError when a stage-2 run records none (an
    end-to-end CNN-LSTM, or features made elsewhere)."""
    import json

    if run_stage(run_dir) == 1:
        return Path(run_dir)
    path = Path(run_dir) / "stage1.json"
    try:
        return Path(json.loads(path.read_text(encoding="utf-8"))["run"])
    except (OSError, ValueError, KeyError):
        raise RunError(f"{run_dir}: this stage-2 run records no stage-1 run (an end-to-end CNN-LSTM, or "
                       "trained on embeddings from elsewhere); heatmaps need a stage-1 network: explain "
                       "that run instead") from None
