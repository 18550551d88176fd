"""Bootstrap intervals and paired differences against known values."""

import pytest

from collabrl.stats import bootstrap_mean, paired_difference


def test_bootstrap_on_a_fixed_sample_is_reproducible_and_sensible():
    values = [0.0, 1.0] * 50  # mean 0.5, standard error 0.05
    est = bootstrap_mean(values, seed=3)
    assert est.mean == 0.5 and est.n == 100
    assert est == bootstrap_mean(values, seed=3)
    # The 95% interval of a mean with s.e. 0.05 is about +-0.098.
    assert est.low == pytest.approx(0.40, abs=0.02) and est.high == pytest.approx(0.60, abs=0.02)


def test_constant_sample_has_a_zero_width_interval():
    est = bootstrap_mean([2.0, 2.0, 2.0])
    assert (est.low, est.mean, est.high) == (2.0, 2.0, 2.0)


def test_paired_difference_removes_item_variance():
    # Items differ hugely in difficulty, but b is always exactly 0.1 above a.
    a = {i: float(i) for i in range(30)}
    b = {i: float(i) + 0.1 for i in range(30)}
    diff = paired_difference("b", b, "a", a)
    assert diff.estimate.mean == pytest.approx(0.1)
    assert diff.estimate.low == pytest.approx(0.1) and not diff.within_noise


def test_paired_difference_uses_shared_items_and_flags_noise():
    a = {1: 1.0, 2: 0.0, 3: 1.0, 4: 0.0}
    b = {1: 0.0, 2: 1.0, 3: 1.0, 4: 0.0, 99: 5.0}
    diff = paired_difference("a", a, "b", b)
    assert diff.estimate.n == 4 and diff.estimate.mean == 0.0 and diff.within_noise
    assert paired_difference("a", {1: 1.0}, "b", {2: 1.0}) is None


def test_empty_sample_is_an_error():
    with pytest.raises(ValueError):
        bootstrap_mean([])
