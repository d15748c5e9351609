from __future__ import annotations

import itertools

import numpy as np
import pytest

from reindexer.evaluation.significance import bootstrap_means, paired_test, paired_tests


def test_identical_inputs_give_zero_delta_and_p_one():
    values = np.random.default_rng(0).random(200)
    t = paired_test(values, values.copy(), resamples=2000)
    assert t.delta == 0.0
    assert t.p_value == 1.0
    assert (t.ci_low, t.ci_high) == (0.0, 0.0)
    assert (t.wins, t.losses, t.ties) == (0, 0, 200)


def test_clear_shift_is_significant_and_ci_excludes_zero():
    rng = np.random.default_rng(1)
    base = rng.random(300)
    cand = base + 0.05 + rng.normal(0, 0.02, 300)
    t = paired_test(base, cand, resamples=5000)
    assert t.delta == pytest.approx(0.05, abs=0.01)
    assert t.p_value < 0.001
    assert t.p_method == "monte-carlo"
    assert 0 < t.ci_low < t.delta < t.ci_high
    assert t.wins > 250


def test_clear_drop_gives_negative_interval():
    base = np.linspace(0.2, 0.9, 100)
    t = paired_test(base, base - 0.1, resamples=2000)
    assert t.ci_high < 0
    assert t.p_value < 0.001
    assert (t.wins, t.losses, t.ties) == (0, 100, 0)


def test_noise_is_not_significant():
    rng = np.random.default_rng(2)
    base = rng.random(200)
    cand = base + rng.normal(0, 0.1, 200)
    t = paired_test(base, cand, resamples=4000)
    assert t.ci_low < 0 < t.ci_high
    assert t.p_value > 0.05


def test_reproducible_with_a_seed_and_varies_without_fixing_it():
    rng = np.random.default_rng(3)
    base, cand = rng.random(80), rng.random(80)
    a = paired_test(base, cand, seed=7, resamples=3000)
    b = paired_test(base, cand, seed=7, resamples=3000)
    c = paired_test(base, cand, seed=8, resamples=3000)
    assert a == b
    assert (a.ci_low, a.ci_high, a.p_value) != (c.ci_low, c.ci_high, c.p_value)


def test_exact_enumeration_for_few_non_zero_differences():
    base = np.zeros(50)
    cand = np.zeros(50)
    cand[:5] = [0.5, 0.4, 0.3, 0.2, -0.1]
    t = paired_test(base, cand)
    assert t.p_method == "exact"
    d = cand[:5]
    # brute force over the 32 sign vectors
    extreme = sum(abs(np.dot(signs, d)) >= abs(d.sum()) - 1e-12 for signs in itertools.product((1, -1), repeat=5))
    assert t.p_value == pytest.approx(extreme / 32)
    assert (t.wins, t.losses, t.ties) == (4, 1, 45)


def test_all_positive_small_sample_reaches_the_exact_minimum():
    t = paired_test(np.zeros(6), np.full(6, 0.1))
    assert t.p_value == pytest.approx(2 / 64)  # all + and all - are as extreme


def test_monte_carlo_p_is_never_zero():
    t = paired_test(np.zeros(100), np.ones(100), resamples=100, permutations=999)
    assert t.p_value == pytest.approx(1 / 1000)


def test_bootstrap_means_matches_index_resampling_in_distribution():
    rng = np.random.default_rng(4)
    d = rng.normal(0.1, 1.0, size=(50, 1))
    means = bootstrap_means(d, 20000, np.random.default_rng(5))[:, 0]
    assert means.mean() == pytest.approx(d.mean(), abs=0.01)
    # the standard error of a mean of 50 resampled values
    assert means.std() == pytest.approx(d.std() / np.sqrt(50), rel=0.05)


def test_many_metrics_share_resamples():
    rng = np.random.default_rng(6)
    base = {"a": rng.random(60), "b": rng.random(60)}
    cand = {"a": base["a"] + 0.1, "b": base["b"]}
    tests = paired_tests(base, cand, resamples=2000)
    assert tests["a"].p_value < 0.01
    assert tests["b"].p_value == 1.0
    # the same column alone gives the same numbers: shared resamples, no cross-talk
    alone = paired_tests({"a": base["a"]}, {"a": cand["a"]}, resamples=2000)["a"]
    assert alone.ci_low == pytest.approx(tests["a"].ci_low)


def test_bad_input():
    with pytest.raises(ValueError):
        paired_test([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        paired_test([], [])
    with pytest.raises(ValueError):
        paired_tests({"a": [1.0]}, {"b": [1.0]})
