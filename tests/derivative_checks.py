"""One parameter's derivative three ways, for the per-kind gradient tests: reverse mode,
forward mode (``torch.func.jvp``) and the five-point central difference
(f'(x) ~ [8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))] / 12h, error O(h^4))."""

from __future__ import annotations

from collections.abc import Callable

import torch


def three_ways(objective: Callable[[torch.Tensor], torch.Tensor], value0: torch.Tensor | float,
               relative_step: float = 1e-3) -> tuple[float, float, float]:
    """``(reverse, forward, fd)`` of a scalar ``objective`` at the first entry of
    ``value0`` (a float, or a 1-d tensor whose first entry is varied: the tangent is all
    ones, the finite-difference step moves every entry alike, as a single parameter has
    one entry). Step ``relative_step * |value0[0]|``."""
    theta0 = torch.as_tensor(value0, dtype=torch.float64).clone()
    theta = theta0.clone().requires_grad_(True)
    (reverse,) = torch.autograd.grad(objective(theta), theta)
    forward = torch.func.jvp(objective, (theta0.clone(),), (torch.ones_like(theta0),))[1]
    h = relative_step * abs(float(theta0.reshape(-1)[0]))
    with torch.no_grad():
        fd = (8 * (objective(theta0 + h) - objective(theta0 - h))
              - (objective(theta0 + 2 * h) - objective(theta0 - 2 * h))) / (12 * h)
    return float(reverse.reshape(-1)[0]), float(forward), float(fd)


def assert_three_agree(name: str, derivatives: tuple[float, float, float],
                       fd_rtol: float) -> None:
    """Reverse non-zero, forward = reverse to 1e-12, FD = reverse to ``fd_rtol``."""
    reverse, forward, fd = derivatives
    print(f"{name}: reverse {reverse:.12e} forward {forward:.12e} fd {fd:.12e}")
    assert reverse != 0.0
    assert abs(forward - reverse) <= 1e-12 * abs(reverse)
    assert abs(fd - reverse) <= fd_rtol * abs(reverse)
