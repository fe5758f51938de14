"""Statistics as llama-bench and llama-perplexity report them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """A value with its uncertainty (a standard error, or a standard deviation for repetitions)."""

    value: float
    uncertainty: float = 0.0

    def as_dict(self, digits: int = 6) -> dict[str, float]:
        return {"value": round(self.value, digits), "uncertainty": round(self.uncertainty, digits)}

    def format(self, digits: int = 2, scale: float = 1.0, unit: str = "") -> str:
        return f"{self.value * scale:.{digits}f} ± {self.uncertainty * scale:.{digits}f}{unit}"


def mean(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("mean of no values")
    return math.fsum(values) / len(values)


def stddev(values: Sequence[float]) -> float:
    """Sample standard deviation (n - 1), as llama-bench reports the spread of its repetitions."""
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return math.sqrt(math.fsum((v - m) ** 2 for v in values) / (len(values) - 1))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between the closest ranks (llama-perplexity's and numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    if fraction <= 0:
        return ordered[0]
    if fraction >= 1:
        return ordered[-1]
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def median(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def mean_with_error(values: Sequence[float]) -> Estimate:
    """The mean and its standard error, sqrt(population variance / (n - 1)) as llama-perplexity has it."""
    m = mean(values)
    n = len(values)
    if n < 2:
        return Estimate(m, 0.0)
    variance = math.fsum(v * v for v in values) / n - m * m
    return Estimate(m, math.sqrt(variance / (n - 1)) if variance > 0 else 0.0)


def covariance_of_means(a: Sequence[float], b: Sequence[float]) -> float:
    """Covariance of the two sample means (llama-perplexity's, for the PPL ratio's uncertainty)."""
    n = len(a)
    if n != len(b):
        raise ValueError("covariance of samples of different sizes")
    if n < 2:
        return 0.0
    cov = math.fsum(x * y for x, y in zip(a, b, strict=True)) / n - mean(a) * mean(b)
    return cov / (n - 1)


def proportion(hits: int, count: int) -> Estimate:
    """A fraction and its binomial standard error."""
    if count <= 0:
        raise ValueError("proportion of no trials")
    p = hits / count
    return Estimate(p, math.sqrt(p * (1 - p) / (count - 1)) if count > 1 else 0.0)


def ppl(nll: Sequence[float]) -> Estimate:
    """Perplexity exp(mean NLL), its uncertainty by the delta method."""
    log_ppl = mean_with_error(nll)
    value = math.exp(log_ppl.value)
    return Estimate(value, value * log_ppl.uncertainty)


def ppl_ratio(nll: Sequence[float], reference_nll: Sequence[float]) -> tuple[Estimate, Estimate]:
    """(ln(PPL/PPL_ref), PPL/PPL_ref), with uncertainties that account for the correlation."""
    a, b = mean_with_error(nll), mean_with_error(reference_nll)
    cov = covariance_of_means(nll, reference_nll)
    unc = math.sqrt(max(a.uncertainty**2 + b.uncertainty**2 - 2 * cov, 0.0))
    log_ratio = Estimate(a.value - b.value, unc)
    ratio = math.exp(log_ratio.value)
    return log_ratio, Estimate(ratio, ratio * unc)


def rms(values: Sequence[float]) -> Estimate:
    """Root mean square, its uncertainty propagated from the mean of squares."""
    squares = mean_with_error([v * v for v in values])
    value = math.sqrt(squares.value)
    return Estimate(value, 0.5 / value * squares.uncertainty if value > 0 else 0.0)
