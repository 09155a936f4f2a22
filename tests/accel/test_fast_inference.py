"""The fast CPU inference path: same images as eager, with and without the compiled kernels."""
import pytest
import torch

from conftest import synthetic_batch
from mrdistill.accel import native
from mrdistill.models import build_model
from mrdistill.accel.fast_inference import EagerInference, InferenceDCCNN, optimise_for_inference
from mrdistill.accel.parallel import run_chunks
from mrdistill.models.flops import count_flops
from mrdistill.physics.column_dc import column_projection
from mrdistill.physics.fft import fft2c, ifft2c
from mrdistill.physics.masks import make_mask


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("kwargs", [
    {"convs": 5},
    {"convs": 3, "dc": "soft", "dc_lambda": 0.5},
    {"convs": 3, "in_channels": 2, "activation": "leaky_relu", "residual": True},
    {"convs": 2, "channels": 16, "residual": True},
])
@pytest.mark.parametrize("use_native", [True, False])
def test_fast_path_matches_eager(kwargs, use_native):
    batch = synthetic_batch(n=3, size=32, complex_input=kwargs.get("in_channels") == 2)
    model = build_model("dccnn", seed=0, **kwargs)
    width = kwargs.get("channels", 32)
    # chunk_bytes for 2 slices: the batch of 3 runs as chunks of 2 + 1
    fast = optimise_for_inference(model, batch.kspace, batch.mask, chunk_bytes=2 * width * 32 * 32 * 4,
                                  native=use_native)
    assert isinstance(fast, InferenceDCCNN) and fast.chunk == 2
    streamed = use_native and native.cascade_kernel() is not None
    assert fast.description.startswith("compiled AVX-512 cascade") == streamed
    with torch.no_grad():
        ref = model(batch.kspace, batch.mask).image
    out = fast(batch.kspace, batch.mask)
    assert out.features == {} and out.image.shape == ref.shape
    assert _relative_error(out.image, ref) < 1e-4


def test_chunks_on_worker_threads_give_the_same_images_in_order():
    batch = synthetic_batch(n=5, size=32)
    model = build_model("dccnn", convs=3, seed=0)
    fast = optimise_for_inference(model, batch.kspace, batch.mask, chunk_bytes=32 * 32 * 32 * 4)
    assert fast.chunk == 1
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        serial = fast(batch.kspace, batch.mask).image
        torch.set_num_threads(2)  # 2 workers of 1 thread: the same arithmetic per slice
        threaded = fast(batch.kspace, batch.mask).image
        assert torch.get_num_threads() == 2  # restored after the workers
    finally:
        torch.set_num_threads(before)
    assert torch.equal(serial, threaded) and not threaded.requires_grad


def test_run_chunks_keeps_order_and_gives_each_worker_a_share_of_the_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = run_chunks(lambda p: torch.tensor([p.start, torch.get_num_threads()]),
                         [slice(i, i + 1) for i in range(5)])
        assert [int(o[0]) for o in out] == [0, 1, 2, 3, 4]
        assert all(int(o[1]) == 1 for o in out)
        torch.set_num_threads(1)
        assert [int(o[1]) for o in run_chunks(lambda p: torch.tensor([0, torch.get_num_threads()]),
                                              [slice(0, 1), slice(1, 2)])] == [1, 1]
    finally:
        torch.set_num_threads(before)


def test_fast_path_with_shared_and_2d_masks():
    model = build_model("dccnn", convs=3, seed=0)
    image = torch.rand(2, 1, 24, 20, generator=torch.Generator().manual_seed(0)).to(torch.complex64)
    for mask in (make_mask("kdmri", (24, 20), 4.0, seed=1),  # (1, 1, W), shared by the batch
                 make_mask("gaussian2d", (24, 20), 4.0, seed=1)[None]):  # (1, 1, H, W): eager DC
        kspace = fft2c(image) * mask
        fast = optimise_for_inference(model, kspace, mask)
        with torch.no_grad():
            assert _relative_error(fast(kspace, mask).image, model(kspace, mask).image) < 1e-4


def test_column_projection_is_the_masked_fft_projection():
    mask = make_mask("kdmri", (16, 16), 4.0, seed=3)  # (1, 1, W)
    x = torch.randn(2, 1, 16, 16, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    expected = ifft2c(mask * fft2c(x))
    projected = (x.to(torch.complex64) @ column_projection(mask[0]).to(torch.complex64))
    assert torch.allclose(projected, expected, atol=1e-5)


def test_optimise_leaves_model_and_global_rng_alone():
    batch = synthetic_batch(n=2, size=32)
    model = build_model("dccnn", convs=3, seed=0).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    fast = optimise_for_inference(model, batch.kspace, batch.mask)
    fast(batch.kspace, batch.mask)
    count_flops(model, batch.kspace, batch.mask)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_fast_path_refuses_features_and_other_models_fall_back():
    batch = synthetic_batch(n=1, size=32)
    fast = optimise_for_inference(build_model("dccnn", convs=3), batch.kspace, batch.mask)
    with pytest.raises(ValueError, match="features"):
        fast(batch.kspace, batch.mask, return_features=True)

    class Identity(torch.nn.Module):
        def forward(self, kspace, mask):
            return fast(kspace, mask)  # any non-DCCNN model

    assert isinstance(optimise_for_inference(Identity(), batch.kspace, batch.mask), EagerInference)


def test_without_onednn_ops_the_plain_conv_fallback_still_matches(monkeypatch):
    import mrdistill.accel.fast_layers as layers

    def unavailable(*args):
        raise RuntimeError("no oneDNN in this build")

    monkeypatch.setattr(layers, "_pack_weight", unavailable)
    batch = synthetic_batch(n=2, size=32)
    model = build_model("dccnn", convs=3, activation="leaky_relu", seed=0)
    fast = optimise_for_inference(model, batch.kspace, batch.mask, native=False)
    assert isinstance(fast, InferenceDCCNN) and fast.description.startswith("F.conv2d")
    with torch.no_grad():
        ref = model(batch.kspace, batch.mask).image
    assert _relative_error(fast(batch.kspace, batch.mask).image, ref) < 1e-4
