"""How small a change a set of judged queries can see: statistical power of a paired comparison.

A paired comparison of two systems tests the mean of the per-query differences
d = candidate - baseline. With n queries whose differences have standard deviation
``sd``, the smallest true mean difference that a two-sided test at level ``alpha``
detects with probability ``power`` is the *minimum detectable effect* (MDE). In the
large-sample (normal) approximation::

    MDE = (z_{1 - alpha/2} + z_{power}) * sd / sqrt(n)          (2.80 * sd / sqrt(n) at 0.05, 80%)

Here it is computed for the paired t-test, from the noncentral t distribution, with
statsmodels' ``TTestPower``: solving for the standardised effect d* = MDE / sd at
(n, alpha, power) gives the same number as the formula above for large n and a
larger, honest one for small n, where the t distribution's heavier tails cost power
(at n = 10 the factor is 3.15, not 2.80). The gate's own test is a paired
randomisation (sign-flip) test, whose power is that of the t-test to a close
approximation (Smucker, Allan & Carterette 2007 find the two tests agree on IR
metrics; tests/evaluation/test_power.py checks it by simulation). One exception is
exact: with n queries the sign-flip test's smallest two-sided p-value is 2 / 2**n,
so below 6 queries it can never reach p < 0.05 whatever the effect; the power is
then 0 and the MDE infinite.

``sd`` is the *observed* standard deviation of the per-query differences (ddof 1):
the MDE describes this query set and this pair of systems, as Sakai's topic set
size design (2016) does with a variance estimated from past runs.
"""

from __future__ import annotations

import math
from functools import lru_cache

POWER = 0.8
"""The power at which every report states the minimum detectable effect."""

METHOD = (
    "paired t-test power (noncentral t, statsmodels TTestPower), two-sided, "
    "from the observed standard deviation of the per-query differences"
)


def _reachable(n: int, alpha: float) -> bool:
    """Whether the sign-flip test over n queries can give a two-sided p-value below ``alpha`` at all."""
    return n >= 2 and 2.0 ** (1 - n) < alpha


@lru_cache(maxsize=4096)
def standardized_mde(n: int, alpha: float, power: float = POWER) -> float:
    """The detectable mean difference in units of the differences' standard deviation (Cohen's d_z).

    It depends on n, alpha and power only, so one root-finding serves every metric of a
    comparison (and every resample of a calibration); infinite when no effect is detectable.
    """
    _check(alpha=alpha, power=power)
    if not _reachable(n, alpha):
        return math.inf
    from statsmodels.stats.power import TTestPower  # imported here: a second to import, only evaluations need it

    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided"))


def minimum_detectable_effect(sd: float, n: int, alpha: float, power: float = POWER) -> float:
    """The smallest absolute mean difference detected with probability ``power`` by a two-sided test at ``alpha``.

    NaN when ``sd`` is unknown (NaN); infinite when the query set cannot detect any change;
    0 when every query's difference is the same (no variance: any change shows).
    """
    d = standardized_mde(n, alpha, power)
    if math.isinf(d):
        return math.inf
    return math.nan if math.isnan(sd) else d * sd


def power_to_detect(effect: float, sd: float, n: int, alpha: float) -> float:
    """The probability that a two-sided test at ``alpha`` detects a true mean difference of ``effect``.

    NaN when ``sd`` is unknown; 0 when the sign-flip test cannot reach ``alpha`` with n queries.
    """
    _check(alpha=alpha, effect=effect)
    if not _reachable(n, alpha):
        return 0.0
    if math.isnan(sd):
        return math.nan
    if sd == 0:
        return 1.0
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().power(effect_size=effect / sd, nobs=n, alpha=alpha, alternative="two-sided"))


def _check(*, alpha: float | None = None, power: float | None = None, effect: float | None = None) -> None:
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if power is not None and not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if effect is not None and not effect > 0:
        raise ValueError(f"the effect size must be positive, got {effect}")
