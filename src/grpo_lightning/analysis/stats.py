"""Summary statistics and how they are printed: mean ± s.e. over seeds (the bandit report, ``grpo-compare``) and the
paired bootstrap over questions of the cross-fitted GOQA experiment (its percentile intervals)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def mean_se(values: torch.Tensor, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error (sample std with ddof = 1, over √n; 0 for a single value) along ``dim``."""
    n = values.shape[dim]
    se = values.std(dim=dim) / math.sqrt(n) if n > 1 else torch.zeros_like(values.mean(dim=dim))
    return values.mean(dim=dim), se


def mean_se_values(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and standard error of a list of numbers (:func:`mean_se`, in float64); the s.e. is ``None`` for a single
    value, which has no spread to estimate (rather than the 0 of :func:`mean_se`, which would read as certainty)."""
    mean, se = mean_se(torch.tensor(list(values), dtype=torch.float64))
    return mean.item(), (se.item() if len(values) > 1 else None)


def format_mean_se(mean: float, se: float | None, digits: int = 4, widths: tuple[int, int] = (0, 0)) -> str:
    """The one spelling of a mean and its s.e.: ``mean ± s.e.`` with ``digits`` decimals, ``mean (n=1)`` without an
    s.e. ``widths`` right-aligns the mean and left-aligns the s.e. in that many characters, so that the ± of a
    table's column line up."""
    if se is None:
        return f"{mean:>{widths[0]}.{digits}f} (n=1)"
    return f"{mean:>{widths[0]}.{digits}f} ± {se:<{widths[1]}.{digits}f}"


def format_mean_se_of(values: Sequence[float], of: int | None = None, digits: int = 4) -> str:
    """The mean ± s.e. of ``values`` (:func:`format_mean_se`); ``(n=k)`` appended when only k of ``of`` runs have a
    value; ``no pairs`` when there is none."""
    if not values:
        return "no pairs"
    mean, se = mean_se_values(values)
    text = format_mean_se(mean, se, digits)
    if se is not None and of is not None and len(values) != of:
        text += f" (n={len(values)})"
    return text


def format_value(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals; ``–`` for NaN (no value, e.g. a resample without the group), and no
    ``-0`` for a value that rounds to zero."""
    if value != value:  # NaN
        return "–"
    text = f"{value:.{digits}f}"
    return text.lstrip("-") if float(text) == 0 else text


def format_interval(value: float, lo: float, hi: float, digits: int) -> str:
    """A point value with its interval: ``value [lo, hi]`` (:func:`format_value` each)."""
    return f"{format_value(value, digits)} [{format_value(lo, digits)}, {format_value(hi, digits)}]"


def bootstrap_counts(n_units: int, n_boot: int, seed: int = 0) -> torch.Tensor:
    """How often each of ``n_units`` units (GOQA: questions) is drawn in each of ``n_boot`` bootstrap resamples,
    ``(n_boot, n_units)`` int64, each row summing to ``n_units`` (Efron & Tibshirani 1993, §6: draw n of n with
    replacement). Seeded; apply the same rows to every method to pair them."""
    if n_units < 1 or n_boot < 1:
        raise ValueError(f"bootstrap needs >= 1 unit and >= 1 resample, got {n_units} units, {n_boot} resamples")
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(n_units, (n_boot, n_units), generator=g)
    return torch.zeros(n_boot, n_units, dtype=torch.int64).scatter_add_(1, draws, torch.ones_like(draws))


def ratio_of_sums(counts: torch.Tensor, sums: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Per-group means of resampled units: (counts @ sums) / (counts @ n), ``(B, U)``, ``(U, G)``, ``(U, G)`` →
    ``(B, G)``; NaN where a resample holds no observation of a group.

    A unit's ``sums[u, g]`` is the sum of its values in group g (e.g. a question's pair losses in a country) and
    ``n[u, g]`` their number, so a unit drawn c times counts c times: the statistic is the pooled mean over the
    resample's observations, and with ``counts`` all ones it is the plain mean over all observations.
    """
    c = counts.to(torch.float64)
    num, den = c @ sums.to(torch.float64), c @ n.to(torch.float64)
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(num, float("nan")))


def percentile_interval(samples: torch.Tensor, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """The percentile interval of bootstrap replicates along dim 0, NaN replicates left out: the (1 − level)/2
    and (1 + level)/2 quantiles (Efron & Tibshirani 1993, §13.3)."""
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.nanquantile(samples.to(torch.float64), q, dim=0)
    return lo, hi
