"""Example inputs of an export: a real slice of the embedded corpus, undersampled, in both the
eager model's form (complex k-space) and the exported graph's (real tensors, `projection.from_complex`).

The slice is the middle slice of the embedded MNI volume, resized like the embedded data sets
(`square_resize` to the larger side, normalised to max 1) and centre-cropped to (H, W); a batch of
n holds n neighbouring slices with masks drawn with seeds 0..n-1, so a graph is exported and
checked on distinct slices and masks (no dimension is specialised to a constant).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mrdistill.data.coils import simulate_coil_maps
from mrdistill.data.simulate import simulate_kspace, square_resize
from mrdistill.data.sources import load_source
from mrdistill.deploy.projection import from_complex
from mrdistill.physics.fft import fft2c
from mrdistill.physics.masks import make_mask, stable_seed

SOURCE = "mni"


@dataclass
class ExampleBatch:
    """kspace complex64 (N, C, H, W) masked; mask float32 (N, 1, 1|H, W); smaps complex64
    (N, C, H, W) or None; `graph_args` the same as the graph's float32 inputs."""

    kspace: Tensor
    mask: Tensor
    smaps: Tensor | None
    description: str

    def graph_args(self, with_smaps: bool) -> tuple[Tensor, ...]:
        args = (from_complex(self.kspace), self.mask.contiguous())
        return args + (from_complex(self.smaps),) if with_smaps and self.smaps is not None else args

    def eager_kwargs(self, with_smaps: bool) -> dict[str, Tensor]:
        return {"smaps": self.smaps} if with_smaps and self.smaps is not None else {}


def example_images(n: int, height: int, width: int) -> tuple[Tensor, int]:
    """n neighbouring middle slices of the embedded volume: float32 (n, H, W), each max 1, and
    the index of the first."""
    volume = load_source(SOURCE)
    middle = volume.shape[0] // 2
    side = max(height, width)
    out = []
    for i in range(n):
        img = torch.from_numpy(square_resize(volume[middle + i], side))
        top, left = (side - height) // 2, (side - width) // 2
        img = img[top:top + height, left:left + width]
        out.append(img / img.max().clamp_min(1e-8))
    return torch.stack(out), middle


def example_batch(n: int, height: int, width: int, coils: int, complex_data: bool, mask_kind: str,
                  acceleration: float) -> ExampleBatch:
    """n real slices as undersampled k-space with `coils` simulated coils (coil maps given)."""
    images, first = example_images(n, height, width)
    mode = "complex" if complex_data else "real"
    image = torch.stack([simulate_kspace(img, mode, stable_seed(f"{SOURCE}:{first + i}"))[1]
                         for i, img in enumerate(images)])
    smaps = None
    if coils > 1:
        smaps = simulate_coil_maps(coils, (height, width))[None].expand(n, -1, -1, -1).contiguous()
        image = smaps * image
    mask = torch.stack([make_mask(mask_kind, (height, width), acceleration, seed=i) for i in range(n)])
    kspace = fft2c(image) * mask + 0.0
    return ExampleBatch(kspace, mask, smaps,
                        f"embedded '{SOURCE}' slices {first}..{first + n - 1}, {mode} mode, {coils} coil(s), "
                        f"{mask_kind} {acceleration:g}x masks seeded 0..{n - 1}")

