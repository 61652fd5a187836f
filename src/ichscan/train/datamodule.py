"""Cache → labelled slices → (optional stratified subset) → folds → train/validation datasets."""

from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
from torch.utils.data import DataLoader

from ichscan.config import ExperimentConfig
from ichscan.data.dataset import SliceDataset, create_loader
from ichscan.labels import LABELS

log = logging.getLogger(__name__)


class DataError(ValueError):
    """The cache cannot feed this experiment; the message names the cache and the reason."""


def labelled_slices(slices: pd.DataFrame, labels: tuple[str, ...], source: str) -> pd.DataFrame:
    """Rows whose used labels are all known; logs how many unlabelled rows were left out and why."""
    missing = [label for label in LABELS if label not in slices.columns]
    if missing:
        raise DataError(f"{source}: slices table has no label column(s) {missing}; index with --labels")
    known = slices[list(labels)].notna().all(axis=1)
    if not known.any():
        raise DataError(f"{source}: no slice has labels for {list(labels)}")
    if not known.all():
        log.warning("%s: %d of %d slices have no labels and are not used for training or validation",
                    source, int((~known).sum()), len(slices))
    return slices.loc[known].reset_index(drop=True)


def subset(slices: pd.DataFrame, fraction: float, seed: int) -> pd.DataFrame:
    """A multilabel-stratified share of the rows (seed 003: 10 % of RSNA), or all when fraction is 1."""
    if fraction >= 1.0:
        return slices
    from ichscan.data.splits import stratified_subset

    return stratified_subset(slices, fraction=fraction, seed=seed).reset_index(drop=True)


def split_folds(config: ExperimentConfig, slices: pd.DataFrame) -> pd.Series:
    """Fold of each row (``ichscan.data.splits.assign_folds`` with the configured method); logs a
    warning when the split leaks patients (`ichscan.data.splits.split_warning`)."""
    from ichscan.data.splits import assign_folds, split_warning

    split = config.data.split
    warning = split_warning(slices, split.method, split.group)
    if warning:
        log.warning("%s: %s", config.data.cache_dir, warning)
    return assign_folds(slices, method=split.method, n_folds=split.n_folds, seed=split.seed, group_col=split.group)


class SliceDataModule(pl.LightningDataModule):
    """Train and validation ``SliceDataset`` of one fold, with the configured training sampler.

    ``setup`` is idempotent, so ``fit`` may call it early to learn label counts for the loss.
    """

    def __init__(self, config: ExperimentConfig) -> None:
        super().__init__()
        self.config = config
        self.train_slices: pd.DataFrame | None = None
        self.val_slices: pd.DataFrame | None = None
        self.train_set: SliceDataset | None = None
        self.val_set: SliceDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from ichscan.prepare import read_slices

        data = self.config.data
        source = str(data.cache_dir)
        try:
            slices = read_slices(data.cache_dir)
        except FileNotFoundError as exc:
            raise DataError(f"{source}: not a prepared cache ({exc}); run `ichscan prepare` first") from exc
        slices = labelled_slices(slices, data.labels, source)
        try:
            slices = subset(slices, data.subset_fraction, data.subset_seed)
            slices = slices.assign(fold=split_folds(self.config, slices).to_numpy())
        except ValueError as exc:
            raise DataError(f"{source}: cannot split {len(slices)} labelled slices into "
                            f"{data.split.n_folds} {data.split.method} folds ({exc})") from exc
        is_val = slices["fold"].to_numpy() == data.fold
        if is_val.all() or not is_val.any():
            raise DataError(f"{source}: fold {data.fold} leaves an empty training or validation set "
                            f"({len(slices)} labelled slices, {data.split.n_folds} folds)")
        self.train_slices = slices.loc[~is_val].reset_index(drop=True)
        self.val_slices = slices.loc[is_val].reset_index(drop=True)
        self.train_set = SliceDataset(data.cache_dir, self.train_slices, offsets=data.offsets, size=data.size)
        self.val_set = SliceDataset(data.cache_dir, self.val_slices, offsets=data.offsets, size=data.size)
        log.info("fold %d: %d training and %d validation slices (%s split, %d folds)", data.fold,
                 len(self.train_set), len(self.val_set), data.split.method, data.split.n_folds)

    def label_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Positives and negatives per label ``(6,)`` in the training fold (for weighted losses)."""
        self.setup()
        assert self.train_set is not None
        labels = self.train_set.labels
        positives = np.nansum(labels, axis=0).astype(np.int64)
        negatives = np.sum(labels == 0, axis=0).astype(np.int64)
        return positives, negatives

    def _workers(self) -> int:
        return self.config.trainer.num_workers

    def train_dataloader(self) -> DataLoader[Any]:
        self.setup()
        assert self.train_set is not None
        trainer_cfg = self.config.trainer
        sampler = self._sampler()
        return create_loader(
            self.train_set,
            batch_size=trainer_cfg.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            workers=self._workers(),
            drop_last=len(self.train_set) > trainer_cfg.batch_size,  # no BatchNorm batch of one
            seed=trainer_cfg.seed,
        )

    def val_dataloader(self) -> DataLoader[Any]:
        self.setup()
        assert self.val_set is not None
        trainer_cfg = self.config.trainer
        return create_loader(
            self.val_set,
            batch_size=trainer_cfg.eval_batch_size or 2 * trainer_cfg.batch_size,
            workers=self._workers(),
        )

    def _sampler(self) -> Any:
        sampler_cfg = self.config.sampler
        if sampler_cfg.name == "shuffle":
            return None
        from ichscan.data.samplers import create_sampler

        assert self.train_set is not None
        return create_sampler(sampler_cfg.name, self.train_set.labels, seed=self.config.trainer.seed,
                              **sampler_cfg.params)
