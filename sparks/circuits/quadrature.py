"""IG quadrature: the points along the corrupted -> clean path and their weights, for the
midpoint, Gauss-Legendre, right and left rules (docs/real-models.md, IG quadrature)."""

from __future__ import annotations

import torch

from sparks.circuits.spec import DEFAULT_SCHEDULE, SCHEDULES

IG_SCHEDULES = SCHEDULES


def ig_points(steps: int, schedule: str = DEFAULT_SCHEDULE) -> tuple[torch.Tensor, torch.Tensor]:
    """IG quadrature on [0, 1]: interpolation points alpha (0 = corrupted, 1 = clean), in the
    order they are run (highest first), and their weights (summing to 1).

    right: k/m, k = m..1, equal weights (a right Riemann sum; ends on the clean input, so the
    first pass doubles as the clean run). left: k/m, k = m-1..0 (hannamw/EAP-IG's). Both are first
    order: at small m they differ by about (g(clean) - g(corrupt)) / m. midpoint: (k + 1/2)/m,
    second order. gauss: Gauss-Legendre nodes and weights, exact for polynomials of degree
    2m - 1. Rules without the point alpha = 1 run the clean input first with weight 0."""
    if schedule not in IG_SCHEDULES:
        raise ValueError(f"unknown IG schedule {schedule!r}: use one of {', '.join(IG_SCHEDULES)}")
    if steps < 1:
        raise ValueError(
            f"IG steps must be at least 1 (got {steps}): 1 is plain EAP, 5 to 8 the paper's usual"
        )
    k = torch.arange(steps - 1, -1, -1, dtype=torch.float64)
    equal = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    if schedule == "right":
        return (k + 1) / steps, equal
    if schedule == "left":
        return k / steps, equal
    if schedule == "midpoint":
        return (k + 0.5) / steps, equal
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(steps)  # on [-1, 1], ascending
    alphas = torch.from_numpy((x[::-1] + 1) / 2).to(torch.float64)
    return alphas, torch.from_numpy(w[::-1] / 2).to(torch.float64)


def ig_alphas(steps: int, schedule: str = DEFAULT_SCHEDULE) -> torch.Tensor:
    """The interpolation points of `ig_points`, in run order."""
    return ig_points(steps, schedule)[0]
