"""Conjugate gradients on (real, imaginary) pairs: `physics.consistency.conjugate_gradient` with a
warm start and a fixed number of iterations, step for step, in real arithmetic for export."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from mrdistill.deploy.dft import Pair, batch_dot
from mrdistill.physics.consistency import safe_div


def _axpy(alpha: Tensor, x: Pair, y: Pair) -> Pair:
    """y + alpha x with alpha (N,) per sample."""
    a = alpha.reshape(-1, *([1] * (x[0].dim() - 1)))
    return y[0] + a * x[0], y[1] + a * x[1]


def pair_conjugate_gradient(normal: Callable[[Pair], Pair], rhs: Pair, x0: Pair, iters: int) -> Pair:
    """Solve normal(x) = rhs for every sample by `iters` CG steps from x0; pairs (N, ...)."""
    x = x0
    ax = normal(x)
    r = (rhs[0] - ax[0], rhs[1] - ax[1])
    p = r
    rs = batch_dot(r, r)
    for _ in range(iters):
        ap = normal(p)
        alpha = safe_div(rs, batch_dot(p, ap))
        x = _axpy(alpha, p, x)
        r = _axpy(-alpha, ap, r)
        rs_new = batch_dot(r, r)
        p = _axpy(safe_div(rs_new, rs), p, r)
        rs = rs_new
    return x
