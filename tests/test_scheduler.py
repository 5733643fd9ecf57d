"""The arrival process, checked on the scheduling function itself (not timed)."""
import itertools
import math
import statistics

import pytest

from engine.scheduler import send_offsets_s


def gaps(rate, burstiness, n=20000, seed=1):
    offsets = list(itertools.islice(send_offsets_s(rate, burstiness, seed), n))
    assert offsets[0] == 0.0
    return [b - a for a, b in zip(offsets, offsets[1:])]


@pytest.mark.parametrize("rate", [5.0, 200.0])
def test_poisson_gaps_have_mean_one_over_rate_and_cv_one(rate):
    g = gaps(rate, 1.0)
    mean = statistics.fmean(g)
    cv = statistics.pstdev(g) / mean
    assert mean == pytest.approx(1 / rate, rel=0.03)
    assert cv == pytest.approx(1.0, abs=0.03)


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_gaps_have_cv_one_over_sqrt_shape(burstiness):
    g = gaps(50.0, burstiness)
    mean = statistics.fmean(g)
    assert mean == pytest.approx(1 / 50.0, rel=0.04)
    # gamma(k, theta): cv = 1/sqrt(k)
    assert statistics.pstdev(g) / mean == pytest.approx(1 / math.sqrt(burstiness), rel=0.05)


def test_infinite_burstiness_is_evenly_spaced_and_absolute():
    offsets = list(itertools.islice(send_offsets_s(8.0, math.inf), 1001))
    # absolute from t0, not accumulated: the 1000th is exactly 1000/rate
    assert offsets[1000] == 1000 / 8.0
    assert set(round(b - a, 12) for a, b in zip(offsets, offsets[1:])) == {0.125}


def test_same_seed_same_schedule_other_seed_other_schedule():
    a = list(itertools.islice(send_offsets_s(10.0, 1.0, seed=7), 50))
    b = list(itertools.islice(send_offsets_s(10.0, 1.0, seed=7), 50))
    c = list(itertools.islice(send_offsets_s(10.0, 1.0, seed=8), 50))
    assert a == b and a != c


def test_closed_loop_has_no_schedule():
    assert list(itertools.islice(send_offsets_s(None), 3)) == [None, None, None]


def test_a_run_of_known_length_offers_exactly_its_rate():
    n, rate = 3000, 200.0
    offsets = list(itertools.islice(send_offsets_s(rate, 1.0, seed=5, number=n), n))
    assert offsets[0] == 0.0 and offsets == sorted(offsets)
    assert (n - 1) / offsets[-1] == pytest.approx(rate, rel=1e-9)
    g = [b - a for a, b in zip(offsets, offsets[1:])]
    # still Poisson-like inside the run
    assert statistics.pstdev(g) / statistics.fmean(g) == pytest.approx(1.0, abs=0.06)
