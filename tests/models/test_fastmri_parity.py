"""Parity with fastMRI 0.3.0's own U-Net and E2E-VarNet: fastMRI's models are built with seeded random
weights, their state_dicts go through a file (torch.save / torch.load(weights_only=True)) into
mrdistill's `unet` and `varnet`, and both reconstruct the same masked k-space, each in its own layout
(fastMRI: real views (N, C, H, W, 2) and a bool mask (N, 1, 1, W, 1); mrdistill: complex64 (N, C, H, W)
and a float mask (N, 1, 1, W)). Masks come from fastMRI's RandomMaskFunc through its apply_mask,
including a padded phase-encode axis as fastMRI's data transform applies from the file header.

Tolerance: max |ours - fastMRI| <= 1e-5 x max |fastMRI| (float32; the two differ only in the order
of FFT/complex arithmetic). `make test` installs fastmri==0.3.0 --no-deps (see the Makefile).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

fm_models = pytest.importorskip("fastmri.models", reason="fastmri==0.3.0 is not installed "
                                "(`pip install --no-deps fastmri==0.3.0`; `make test` does it)")
import fastmri  # noqa: E402
from fastmri.data import subsample, transforms  # noqa: E402

from mrdistill.models import build_model, count_parameters  # noqa: E402

RTOL = 1e-5


def roundtrip(src: torch.nn.Module, dst: torch.nn.Module, tmp_path: Path) -> None:
    """fastMRI's state_dict -> file -> weights_only load -> ours (strict: same keys and shapes)."""
    path = tmp_path / "fastmri_state_dict.pt"
    torch.save(src.state_dict(), path)
    dst.load_state_dict(torch.load(path, weights_only=True))
    src.eval(), dst.eval()


def assert_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    err = (ours - ref).abs().max().item()
    assert err <= RTOL * ref.abs().max().item(), f"max error {err:.3g} vs max {ref.abs().max().item():.3g}"


def masked_batch(coils: int, h: int, w: int, padding: tuple[int, int] | None, seed: int = 0
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two slices of random k-space masked by fastMRI's RandomMaskFunc (8 % centre, x4), each with
    its own mask: -> fastMRI real view (2, C, H, W, 2), bool mask (2, 1, 1, W, 1), low frequencies."""
    gen = torch.Generator().manual_seed(seed)
    mask_func = subsample.RandomMaskFunc([0.08], [4])
    data, masks = [], []
    for i in range(2):
        full = torch.randn(coils, h, w, 2, generator=gen)
        if padding is not None:  # the header's encoding limits: nothing acquired outside them
            full[:, :, :padding[0]] = 0
            full[:, :, padding[1]:] = 0
        masked, mask, low = transforms.apply_mask(full, mask_func, seed=seed + i, padding=padding)
        data.append(masked)
        masks.append(mask.to(torch.bool))
    return torch.stack(data), torch.stack(masks), low


def ours_layout(kspace: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """fastMRI layout -> complex64 (N, C, H, W) and float mask (N, 1, 1, W)."""
    return torch.view_as_complex(kspace.contiguous()), mask[..., 0].float()


def test_unet_keys_shapes_and_size_match_fastmri(tmp_path: Path) -> None:
    ref = fm_models.Unet(in_chans=1, out_chans=1, chans=32, num_pool_layers=4)
    ours = build_model("unet", in_chans=1, out_chans=1, chans=32, num_pool_layers=4)
    assert count_parameters(ours) == 7_756_097 == sum(p.numel() for p in ref.parameters())
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}


@pytest.mark.parametrize("h,w", [(32, 32), (37, 45)])
def test_unet_network_matches_fastmri(tmp_path: Path, h: int, w: int) -> None:
    torch.manual_seed(1)
    ref = fm_models.Unet(in_chans=2, out_chans=2, chans=8, num_pool_layers=3)
    ours = build_model("unet", in_chans=2, out_chans=2, chans=8, num_pool_layers=3)
    roundtrip(ref, ours, tmp_path)
    x = torch.randn(2, 2, h, w)
    with torch.no_grad():
        assert_close(ours.run(x), ref(x))


@pytest.mark.parametrize("coils,w", [(1, 32), (4, 27)])
def test_unet_reconstruction_matches_fastmri_pipeline(tmp_path: Path, coils: int, w: int) -> None:
    """Our contract forward == fastMRI's U-Net baseline on the RSS of the zero-filled coil images,
    normalised per instance and clamped as its UnetDataTransform does, output scaled back."""
    torch.manual_seed(2)
    ref = fm_models.Unet(in_chans=1, out_chans=1, chans=8, num_pool_layers=2)
    ours = build_model("unet", in_chans=1, out_chans=1, chans=8, num_pool_layers=2)
    roundtrip(ref, ours, tmp_path)
    kspace, mask, _ = masked_batch(coils, 24, w, None)
    with torch.no_grad():
        image = fastmri.rss(fastmri.complex_abs(fastmri.ifft2c(kspace)), dim=1)  # (N, H, W)
        expected = []
        for slice_ in image:
            normed, mean, std = transforms.normalize_instance(slice_, eps=1e-11)
            expected.append(ref(normed.clamp(-6, 6)[None, None])[0, 0] * std + mean)
        got = ours(*ours_layout(kspace, mask)).image[:, 0]
    assert_close(got, torch.stack(expected))


def test_varnet_keys_and_shapes_match_fastmri() -> None:
    ref = fm_models.VarNet(num_cascades=2, sens_chans=4, chans=6)
    ours = build_model("varnet", num_cascades=2, sens_chans=4, chans=6)
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}


@pytest.mark.parametrize("coils,h,w,padding,low", [
    (1, 32, 32, None, False),          # single-coil, even width, ACS counted from the mask
    (4, 30, 37, None, False),          # multi-coil, odd width
    (3, 32, 36, (3, 33), True),        # padded phase-encode axis, ACS count given (fastMRI transform)
    (3, 33, 35, (2, 32), False),       # padded, odd sizes, ACS counted from the mask
])
def test_varnet_reconstruction_matches_fastmri(tmp_path: Path, coils: int, h: int, w: int,
                                               padding: tuple[int, int] | None, low: bool) -> None:
    torch.manual_seed(3)
    ref = fm_models.VarNet(num_cascades=3, sens_chans=4, sens_pools=2, chans=6, pools=3)
    ours = build_model("varnet", num_cascades=3, sens_chans=4, sens_pools=2, chans=6, pools=3)
    roundtrip(ref, ours, tmp_path)
    with torch.no_grad():  # non-trivial DC weights, so the soft DC term is tested
        for i, cascade in enumerate(ref.cascades):
            cascade.dc_weight.fill_(0.3 + 0.2 * i)
    ours.load_state_dict(ref.state_dict())
    kspace, mask, num_low = masked_batch(coils, h, w, padding, seed=coils)
    with torch.no_grad():
        expected = ref(kspace, mask, num_low if low else None)  # (N, H, W)
        out = ours(*ours_layout(kspace, mask), num_low_frequencies=num_low if low else None,
                   return_features=True)
        maps = ref.sens_net(kspace, mask, num_low if low else None)
    assert_close(out.image[:, 0], expected)
    maps_ours = out.features["sens_maps"]
    assert_close(torch.complex(*maps_ours.chunk(2, dim=1)), torch.view_as_complex(maps.contiguous()))
    n = 2
    assert out.features["cascade3.kspace"].shape == (n, 2 * coils, h, w)
    assert out.features["cascade1.image"].shape == (n, 2, h, w)
    assert {"sens.bottleneck", "cascade1.bottleneck", "cascade3.bottleneck"} <= set(out.features)


def test_varnet_default_is_fastmris_configuration() -> None:
    with torch.device("meta"):  # shapes only: no 30M-parameter initialisation
        ours, ref = build_model("varnet"), fm_models.VarNet()
    assert {k: v.shape for k, v in ours.state_dict().items()} == \
        {k: v.shape for k, v in ref.state_dict().items()}
    assert count_parameters(ours) == 29_936_966
