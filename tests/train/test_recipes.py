"""Every recipe of configs/recipes/ (the seeds' systems at their published sizes) runs with --smoke."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ichscan.config import load_config, smoke
from ichscan.labels import LABELS
from ichscan.train import fit
from train_cache import make_cache

RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "recipes").glob("*.yaml"))
HEAVY = {"seed003_vgg16"}  # 138 M parameters: ~2 GB of checkpoints even at smoke size


@pytest.fixture(scope="module")
def recipe_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 200 slices: enough for seed 003's 10 % stratified subset split into 10 folds
    return make_cache(tmp_path_factory.mktemp("recipes"), n_series=20, n_slices=10)


def test_every_seed_has_recipes() -> None:
    seeds = {path.name[:7] for path in RECIPES}
    assert seeds == {"seed000", "seed001", "seed002", "seed003", "seed004"}
    assert len([p for p in RECIPES if p.name.startswith("seed003")]) == 8


@pytest.mark.parametrize(
    "recipe",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem in HEAVY else p for p in RECIPES],
    ids=[p.stem for p in RECIPES],
)
def test_recipe_smoke_run(recipe: Path, recipe_cache: Path, tmp_path: Path) -> None:
    published = load_config(recipe)
    config = smoke(load_config(recipe, [f"data.cache_dir={recipe_cache}", f"output_dir={tmp_path}",
                                        "trainer.progress_bar=false"]))
    run_dir = fit(config)
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert len(metrics) == 1 and metrics["train_loss"].notna().all() and metrics["val_wll"].notna().all()
    oof = pd.read_parquet(run_dir / "oof.parquet")
    assert len(oof) > 0 and oof[list(LABELS)].apply(lambda c: c.between(0, 1)).all().all()
    # the smoke run kept the recipe's methods
    stored = load_config(run_dir / "config.yaml")
    assert stored.model == published.model and stored.loss == published.loss
    assert stored.optimizer == published.optimizer and stored.data.windows == published.data.windows
    assert stored.data.offsets == published.data.offsets and stored.sampler == published.sampler
