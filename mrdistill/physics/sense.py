"""CG-SENSE: the classical parallel-imaging reconstruction a scanner would run.

x = argmin_x ||A x - y||^2 + lam ||x||^2 with A = M F S (coil maps S, centred orthonormal FFT F,
sampling mask M; `operators.MRIOperator`), solved by conjugate gradients on the normal equations
(A^H A + lam I) x = A^H y (`consistency.conjugate_gradient`). With maps normalised to
sum_c |S_c|^2 = 1 every eigenvalue of A^H A lies in [0, 1], so `lam` is relative to the data term
whatever the k-space scale. With one coil and S = 1 the solution is the zero-filled image divided
by (1 + lam): CG-SENSE only helps where several coils see the object differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from mrdistill.physics.consistency import conjugate_gradient
from mrdistill.physics.espirit import import_sigpy
from mrdistill.physics.operators import MRIOperator


@dataclass(frozen=True)
class SenseSettings:
    """Tikhonov weight (relative to A^H A, whose eigenvalues lie in [0, 1]) and CG iterations;
    `tol` stops early once every slice's residual is below tol x ||A^H y||."""

    lam: float = 1e-2
    iters: int = 20
    tol: float = 1e-5


def cg_sense(kspace: Tensor, mask: Tensor, smaps: Tensor, settings: SenseSettings = SenseSettings()) -> Tensor:
    """The Tikhonov-regularised SENSE image.

    kspace: complex (N, C, H, W) acquired (masked) centred k-space; mask: broadcastable
    ((N, 1, 1, W) or (N, 1, H, W)); smaps: complex (N, C, H, W). Returns complex64 (N, 1, H, W).
    """
    if settings.lam < 0 or settings.iters < 1:
        raise ValueError(f"CG-SENSE needs lam >= 0 and iters >= 1, got {settings}")
    op = MRIOperator(mask, smaps)
    return conjugate_gradient(lambda v: op.AHA(v) + settings.lam * v, op.AH(kspace),
                              iters=settings.iters, tol=settings.tol)


def l1_wavelet(kspace: Tensor, mask: Tensor, smaps: Tensor, lam: float = 1e-3, iters: int = 50) -> Tensor:
    """sigpy's L1-wavelet compressed sensing (`L1WaveletRecon`, Daubechies-4), slice by slice:
    the same arguments as `cg_sense`; `lam` multiplies the wavelet L1 norm of an image scaled to
    max 1 by the caller. Returns complex64 (N, 1, H, W). Needs sigpy (`MrdistillError` otherwise)."""
    app = import_sigpy("the L1-wavelet baseline")
    out = []
    for k, m, s in zip(kspace, mask.expand(kspace.shape[0], 1, *kspace.shape[-2:]), smaps):
        weights = m.expand_as(k).float().cpu().numpy()
        x = app.L1WaveletRecon(k.cpu().numpy(), s.cpu().numpy(), lam, weights=weights, max_iter=iters,
                               show_pbar=False).run()
        out.append(torch.from_numpy(np.asarray(x)).to(torch.complex64))
    return torch.stack(out)[:, None].to(kspace.device)
