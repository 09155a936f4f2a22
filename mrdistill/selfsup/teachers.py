"""Multi-teacher self-supervised training: K models learn together, each from its own subset of the
acquired k-space, without any fully sampled target.

`SelfSupervisedObjective` has the call signature of every objective of the training loop,
`objective(model, sample) -> {"loss": ..., "teacher1": ..., "agreement": ...}`; `model` is an
`Ensemble` (its members are the teachers) or a single model (one self-supervised model, e.g. the
student baseline without distillation). Teachers are called through `models.base.run_model`, so on multi-coil data models that take coil
maps (MoDL, and ensembles of it) get `Sample.smaps`, and the losses compare their coil-combined
images through the same maps. Per teacher k and step:

- "reundersample" (Wu & Li): teacher k reconstructs from Omega_k, a `factors[k]`-fold re-undersampling
  of Omega, and is scored by `reundersampling_loss` against the acquired data on Omega;
- "ssdu" (Yaman et al.): teacher k reconstructs from Theta_k and is scored by the normalised L1+L2
  k-space loss on the held-out Lambda_k.

An optional contrastive agreement term ties the teachers' outputs together through a small MLP
embedding (a training-only module: saved with the run as "extra", not part of the model).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.config import DataConfig, SelfSupConfig
from mrdistill.data.sample import Sample
from mrdistill.errors import MrdistillError, check_choice
from mrdistill.models.base import coil_maps_for, run_model
from mrdistill.models.ensemble import Ensemble
from mrdistill.physics.fft import magnitude, network_to_image
from mrdistill.physics.masks import stable_seed
from mrdistill.selfsup.losses import agreement_loss, reundersampling_loss, ssdu_loss
from mrdistill.selfsup.split import (SELECTIONS, check_acs_block, check_acs_lines, check_factor,
                                     check_rho, reundersample_batch, ssdu_split_batch)

METHODS = ("reundersample", "ssdu")
CHECKPOINTS = ("last", "best")


def check_selfsup(cfg: SelfSupConfig, data: DataConfig) -> None:
    """Reject bad settings before any training starts (one clear line each)."""
    check_choice("self-supervised method", cfg.method, METHODS)
    check_choice("checkpoint choice", cfg.checkpoint, CHECKPOINTS)
    if cfg.teachers < 1:
        raise MrdistillError(f"selfsup.teachers must be at least 1, got {cfg.teachers}")
    if data.mode != "complex":
        raise MrdistillError("self-supervised training needs data.mode: complex (in the real-image "
                             "mode hard DC keeps the acquired data only on mirror-symmetric masks)")
    size = (data.image_size, data.image_size)
    if cfg.method == "reundersample":
        if not cfg.factors:
            raise MrdistillError("selfsup.factors: give at least one re-undersampling factor")
        for f in cfg.factors:
            check_factor(f)
        check_acs_lines(cfg.acs_lines, data.image_size)
    else:
        check_rho(cfg.rho)
        check_choice("SSDU selection", cfg.selection, SELECTIONS)
        check_acs_block(cfg.acs_block, size)


class ProjectionHead(nn.Module):
    """Magnitude image float (N, 1, H, W) -> embedding float (N, dim): pool to 16x16, 2-layer MLP."""

    def __init__(self, grid: int = 16, hidden: int = 128, dim: int = 64) -> None:
        super().__init__()
        self.grid = grid
        self.mlp = nn.Sequential(nn.Linear(grid * grid, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, image: Tensor) -> Tensor:
        return self.mlp(F.adaptive_avg_pool2d(image, self.grid).flatten(1))


def members_of(model: nn.Module) -> list[nn.Module]:
    """The teachers: an ensemble's members, or the model itself."""
    return list(model.members) if isinstance(model, Ensemble) else [model]


def fresh_seeds(rng: np.random.Generator, n: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Mask seeds of rank `rank`'s n items: the global batch's n * world_size seeds are drawn
    (advancing `rng` as one process with the whole batch does) and the rank's contiguous part kept."""
    return rng.integers(0, 2**32, size=n * world_size).tolist()[rank * n:(rank + 1) * n]


class SelfSupervisedObjective(nn.Module):
    """Sum over teachers of their self-supervised losses + agreement_weight x agreement.

    Masks are drawn from a generator seeded with `seed` (fresh every step), or fixed per slice and
    teacher with `fresh_masks=False`; global RNG state is never touched. Batches that carry a target
    are refused: self-supervised training must not see ground truth.

    Under torchrun (`rank` of `world_size`, each rank holding its contiguous part of the global
    batch, `train.batches.rank_part`) every rank draws the fresh-mask seeds of the whole global
    batch from the same generator and keeps its own part (`fresh_seeds`): the ranks' masks differ,
    and N ranks with batch b use the masks of one process with batch N*b, so the world size does not
    change the masks (a short last batch is the exception: `rank_part` tops it up with repeated
    items, so its data already differ from one process's). In eval mode
    (`train.selection.validation_objective`, where every rank scores the whole set) the masks are
    the fixed per-slice ones even with `fresh_masks`: the validation objective is then comparable
    from epoch to epoch, the same on every rank, and the training generator is not advanced by
    validation.
    """

    def __init__(self, cfg: SelfSupConfig, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        super().__init__()
        self.cfg, self.seed = cfg, seed
        self.rank, self.world_size = rank, world_size
        self.rng = np.random.default_rng(seed)
        self.head = ProjectionHead() if cfg.agreement_weight and cfg.teachers > 1 else None

    def resume_state(self) -> dict[str, Any]:
        """The fresh-mask generator's state (`train.state`: a resumed run draws the same masks)."""
        return {"rng": self.rng.bit_generator.state}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]

    def _seeds(self, sample: Sample, k: int) -> list[int]:
        if self.cfg.fresh_masks and self.training:
            return fresh_seeds(self.rng, len(sample.volume), self.rank, self.world_size)
        return [(stable_seed(f"{v}:{s}:teacher{k}") + self.seed) % 2**32
                for v, s in zip(sample.volume, sample.slice_index)]

    def teacher_loss(self, teacher: nn.Module, sample: Sample, k: int) -> tuple[Tensor, Tensor]:
        """(loss, output image in network layout) of teacher k (0-based) on one batch."""
        cfg, seeds = self.cfg, self._seeds(sample, k)
        smaps = coil_maps_for(teacher, sample)
        if cfg.method == "reundersample":
            sub = reundersample_batch(sample.mask, cfg.factors[k % len(cfg.factors)], seeds, cfg.acs_lines)
            out = run_model(teacher, sample._replace(kspace=sample.kspace * sub + 0.0, mask=sub)).image
            loss = reundersampling_loss(network_to_image(out, True), sample.kspace, sample.mask,
                                        cfg.dc_weight, smaps)
        else:
            shape = tuple(sample.kspace.shape[-2:])
            theta, lam = ssdu_split_batch(sample.mask, shape, cfg.rho, seeds, cfg.selection, cfg.acs_block)
            out = run_model(teacher, sample._replace(kspace=sample.kspace * theta + 0.0, mask=theta)).image
            loss = ssdu_loss(network_to_image(out, True), sample.kspace, lam, smaps)
        return loss, out

    def forward(self, model: nn.Module, sample: Sample) -> dict[str, Tensor]:
        if sample.target is not None:
            raise MrdistillError("self-supervised training got a batch with targets; build the "
                                 "training set with with_target=False")
        out: dict[str, Tensor] = {}
        images = []
        total = sample.kspace.real.new_zeros(())
        for k, teacher in enumerate(members_of(model)):
            loss, image = self.teacher_loss(teacher, sample, k)
            out[f"teacher{k + 1}"] = loss
            total = total + loss
            images.append(image)
        if self.head is not None and len(images) > 1:
            z = [self.head(magnitude(x)) for x in images]
            out["agreement"] = agreement_loss(z, self.cfg.agreement_temperature)
            total = total + self.cfg.agreement_weight * out["agreement"]
        out["loss"] = total
        return out
