"""Samplers: weights by hand, empirical draw rates against the documented maths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import RandomSampler, WeightedRandomSampler

from ichscan.data.samplers import (
    balanced_weights,
    create_sampler,
    oversample_weights,
    posneg_weights,
)
from ichscan.labels import LABELS

NEG = [0, 0, 0, 0, 0, 0]
EDH = [1, 1, 0, 0, 0, 0]
EDH_SDH = [1, 1, 0, 0, 0, 1]
SDH = [1, 0, 0, 0, 0, 1]
IPH = [1, 0, 1, 0, 0, 0]


def draw_frequencies(sampler: WeightedRandomSampler | RandomSampler, n_rows: int) -> np.ndarray:
    draws = torch.as_tensor(list(sampler))
    return np.bincount(draws.numpy(), minlength=n_rows) / len(draws)


def test_oversample_takes_max_multiplier_and_default_epoch() -> None:
    labels = np.array([NEG, EDH, EDH_SDH, SDH], dtype=float)
    weights = oversample_weights(labels, {"epidural": 8, "subdural": 2})
    np.testing.assert_array_equal(weights, [1, 8, 8, 2])
    sampler = create_sampler("oversample", labels, multipliers={"epidural": 8, "subdural": 2})
    assert len(sampler) == 19  # Σ w: each row drawn m_i times per epoch in expectation
    np.testing.assert_array_equal(oversample_weights(labels, {"negative": 0.5}), [0.5, 1, 1, 1])


def test_oversample_empirical_rates_match_weights() -> None:
    labels = np.array([NEG, EDH, EDH_SDH, SDH], dtype=float)
    sampler = create_sampler("oversample", labels, multipliers={"epidural": 8, "subdural": 2},
                             num_samples=100_000, seed=3)
    np.testing.assert_allclose(draw_frequencies(sampler, 4), np.array([1, 8, 8, 2]) / 19,
                               atol=0.006)


def test_posneg_draws_positives_with_probability_p() -> None:
    labels = np.array([NEG] * 90 + [IPH] * 7 + [EDH] * 3, dtype=float)
    weights = posneg_weights(labels, 0.3)
    np.testing.assert_allclose(weights[:90], 0.7 / 90)
    np.testing.assert_allclose(weights[90:], 0.3 / 10)
    sampler = create_sampler("posneg", labels, positive_probability=0.3, num_samples=100_000)
    frequencies = draw_frequencies(sampler, 100)
    assert frequencies[90:].sum() == pytest.approx(0.3, abs=0.01)
    assert len(create_sampler("posneg", labels)) == 100
    with pytest.raises(ValueError, match="0 positive"):
        posneg_weights(np.array([NEG] * 3, dtype=float), 0.5)


def test_balanced_gives_each_group_an_equal_share() -> None:
    rows = [NEG] * 50 + [EDH] * 2 + [IPH] * 10 + [SDH] * 20
    labels = np.array(rows, dtype=float)
    # non-empty groups: epidural, intraparenchymal, subdural, negative → G = 4
    sampler = create_sampler("balanced", labels, num_samples=100_000, seed=1)
    frequencies = draw_frequencies(sampler, len(rows))
    for group in (slice(0, 50), slice(50, 52), slice(52, 62), slice(62, 82)):
        assert frequencies[group].sum() == pytest.approx(0.25, abs=0.01)


def test_balanced_weights_sum_memberships_by_hand() -> None:
    labels = np.array([NEG, NEG, EDH, EDH_SDH, SDH], dtype=float)
    # groups: epidural {2, 3}, subdural {3, 4}, negative {0, 1}; G = 3
    expected = [1 / 6, 1 / 6, 1 / 6, 1 / 6 + 1 / 6, 1 / 6]
    np.testing.assert_allclose(balanced_weights(labels), expected)
    # a row with `any` but no subtype belongs to no group: it gets the mean weight, not zero
    any_only = np.array([NEG, [1, 0, 0, 0, 0, 0], SDH], dtype=float)
    np.testing.assert_allclose(balanced_weights(any_only), [0.5, 0.5, 0.5])


def test_shuffle_is_a_seeded_permutation_and_accepts_tables() -> None:
    table = pd.DataFrame(np.array([NEG, EDH, SDH, IPH, NEG], dtype=float), columns=list(LABELS))
    sampler = create_sampler("shuffle", table, seed=5)
    order = list(sampler)
    assert sorted(order) == [0, 1, 2, 3, 4]
    assert list(create_sampler("shuffle", table, seed=5)) == order
    longer = list(create_sampler("shuffle", table, num_samples=12, seed=5))
    assert len(longer) == 12 and set(longer) == set(range(5))


def test_same_seed_same_draws_and_nan_counts_negative() -> None:
    labels = np.array([NEG, EDH, [np.nan] * 6, SDH], dtype=float)
    first = list(create_sampler("posneg", labels, seed=9, num_samples=50))
    assert list(create_sampler("posneg", labels, seed=9, num_samples=50)) == first
    assert list(create_sampler("posneg", labels, seed=10, num_samples=50)) != first
    np.testing.assert_allclose(posneg_weights(labels, 0.5), [0.25, 0.25, 0.25, 0.25])


def test_bad_arguments_are_clear_errors() -> None:
    labels = np.array([NEG, EDH], dtype=float)
    with pytest.raises(ValueError, match="unknown sampler 'uniform'"):
        create_sampler("uniform", labels)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown class"):
        create_sampler("oversample", labels, multipliers={"edh": 8})
    with pytest.raises(ValueError, match=r"shape \(n, 6\)"):
        create_sampler("balanced", np.zeros((3, 5)))
