"""Self-supervised losses: they compare predictions with acquired k-space only, never with a target.

Shapes: complex images and k-space complex64 (N, C, H, W); masks float broadcastable to k-space.
Multi-coil: a coil-combined image (N, 1, H, W) with coil maps `smaps` (N, C, H, W) is compared
through its coil images S x (`physics.operators.expand_coils`); without maps the image holds one
image per coil already.
Every loss returns a scalar tensor (mean over the batch of per-sample values where noted).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mrdistill.physics.consistency import hard_dc
from mrdistill.physics.fft import complex_to_channels, fft2c, ifft2c, magnitude
from mrdistill.physics.operators import apply_mask, expand_coils

_EPS = 1e-12


def complex_magnitude(x: Tensor) -> Tensor:
    """complex (N, C, H, W) -> float32 (N, 1, H, W), root-sum-of-squares over C (smooth at 0)."""
    return magnitude(complex_to_channels(x))


def normalised_l1_l2(k_pred: Tensor, k_ref: Tensor, loss_mask: Tensor) -> Tensor:
    """SSDU's k-space loss on Lambda: 0.5 ||d||_2 / ||y||_2 + 0.5 ||d||_1 / ||y||_1 per sample, mean.

    d = M_Lambda (k_pred - k_ref), y = M_Lambda k_ref; k_pred, k_ref complex (N, C, H, W).
    """
    d = apply_mask(k_pred - k_ref, loss_mask).flatten(1)
    y = apply_mask(k_ref, loss_mask).flatten(1)
    l2 = torch.linalg.vector_norm(d, dim=1) / torch.linalg.vector_norm(y, dim=1).clamp_min(_EPS)
    l1 = d.abs().sum(dim=1) / y.abs().sum(dim=1).clamp_min(_EPS)
    return (0.5 * l2 + 0.5 * l1).mean()


def ssdu_loss(image: Tensor, kspace: Tensor, loss_mask: Tensor, smaps: Tensor | None = None) -> Tensor:
    """`normalised_l1_l2` of the k-space of `image` (as in `reundersampling_loss`, coil-combined
    with `smaps` or one image per coil) against the acquired `kspace` on the loss set Lambda."""
    return normalised_l1_l2(fft2c(expand_coils(image, smaps)), kspace, loss_mask)


def project(image: Tensor, mask: Tensor) -> Tensor:
    """A_Omega^H F-style projection: the image whose k-space is kept on `mask` only, complex64."""
    return ifft2c(apply_mask(fft2c(image), mask))


def reundersampling_fidelity(image: Tensor, kspace: Tensor, mask: Tensor) -> Tensor:
    """MSE(|P_Omega x|, |P_Omega y|): the teacher's image seen through the acquisition Omega against the
    zero-filled acquired data. image: complex (N, C, H, W); kspace: acquired y; mask: Omega."""
    return F.mse_loss(complex_magnitude(project(image, mask)),
                      complex_magnitude(ifft2c(apply_mask(kspace, mask))))


def dc_regulariser(image: Tensor, kspace: Tensor, mask: Tensor) -> Tensor:
    """MSE(|DC_Omega(x)|, |x|): how much hard data consistency with y on Omega would change x."""
    consistent = ifft2c(hard_dc(fft2c(image), kspace, mask))
    return F.mse_loss(complex_magnitude(consistent), complex_magnitude(image))


def reundersampling_loss(image: Tensor, kspace: Tensor, mask: Tensor, dc_weight: float = 0.01,
                         smaps: Tensor | None = None) -> Tensor:
    """Wu & Li's teacher loss: fidelity to the acquired data plus `dc_weight` x the DC regulariser.

    image: the teacher's complex image (N, C, H, W), or (N, 1, H, W) coil-combined with `smaps`,
    reconstructed from a re-undersampled subset; kspace, mask: the acquired y and Omega.
    """
    image = expand_coils(image, smaps)
    loss = reundersampling_fidelity(image, kspace, mask)
    if dc_weight:
        loss = loss + dc_weight * dc_regulariser(image, kspace, mask)
    return loss


def agreement_loss(embeddings: list[Tensor], temperature: float | None = 0.5) -> Tensor:
    """Agreement between teachers from embeddings float (N, D), one per teacher (>= 2), mean over pairs.

    temperature None: 1 - cosine similarity of the same sample's embeddings. Otherwise a symmetric
    InfoNCE: the same sample seen by another teacher is the positive, the other samples of the batch
    are negatives, similarities are cosine / temperature (with N = 1 only the positive remains, so
    the term is constant).
    """
    if len(embeddings) < 2:
        raise ValueError("agreement needs embeddings from at least 2 teachers")
    z = [F.normalize(e, dim=1) for e in embeddings]
    terms = []
    for i in range(len(z)):
        for j in range(i + 1, len(z)):
            if temperature is None:
                terms.append(1.0 - (z[i] * z[j]).sum(dim=1).mean())
                continue
            logits = z[i] @ z[j].T / temperature
            labels = torch.arange(logits.shape[0], device=logits.device)
            terms.append(0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)))
    return torch.stack(terms).mean()
