import pytest
import torch

from conftest import synthetic_batch
from mrdistill.errors import MrdistillError
from mrdistill.models import build_model, count_parameters, list_models
from mrdistill.physics.consistency import dc_network_image
from mrdistill.physics.fft import fft2c, image_to_network, network_to_image


def test_kdmri_parameter_counts_exact():
    teacher = build_model("dccnn", cascades=5, convs=5, channels=32, in_channels=1, residual=False)
    student = build_model("dccnn", cascades=5, convs=3, channels=32, in_channels=1, residual=False)
    assert count_parameters(teacher) == 141_765
    assert count_parameters(student) == 49_285


def test_adaptive_kd_student_size():
    # Wu & Li's student: 5 cascades x 5 convs, 32 filters, 2-channel complex.
    assert count_parameters(build_model("dccnn", convs=5, in_channels=2)) == 144_650


@pytest.mark.parametrize("name", list_models())
def test_every_model_returns_recon_output_with_features(name):
    batch = synthetic_batch(complex_input=False)
    model = build_model(name, seed=0)
    out = model(batch.kspace, batch.mask, return_features=True)
    assert out.image.shape == batch.zero_filled.shape and out.image.dtype == torch.float32
    assert out.features and all(torch.isfinite(v).all() for v in out.features.values())
    assert model(batch.kspace, batch.mask).features == {}


def test_feature_keys_are_stable():
    batch = synthetic_batch()
    out = build_model("dccnn", convs=3, cascades=2)(batch.kspace, batch.mask, return_features=True)
    assert sorted(out.features) == sorted(
        [f"cascade{i}.conv{j}" for i in (1, 2) for j in (1, 2, 3)] + ["cascade1.out", "cascade2.out"])
    assert out.features["cascade1.conv2"].shape[1] == 32


def _mirror_symmetric(mask):
    """Also sample -k for every sampled column k (centred layout, even W: j <-> (W - j) % W)."""
    w = mask.shape[-1]
    return torch.maximum(mask, mask[..., torch.tensor([(w - j) % w for j in range(w)])])


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("complex_input", [False, True])
def test_output_is_data_consistent(complex_input, residual):
    batch = synthetic_batch(complex_input=complex_input)
    mask, kspace = batch.mask, batch.kspace
    if not complex_input:
        # Real mode keeps Re(image), which keeps the acquired k0 of a real image exactly where the
        # mask samples k and -k together (Hermitian symmetry): test it on such a mask.
        mask = _mirror_symmetric(mask)
        kspace = fft2c(batch.target.to(torch.complex64)) * mask + 0.0
    model = build_model("dccnn", in_channels=2 if complex_input else 1, cascades=2, residual=residual,
                        seed=1)
    out = model(kspace, mask)
    k = fft2c(network_to_image(out.image, complex_input))
    sampled = mask.expand_as(k).bool()
    assert bool(sampled.any()) and not bool(sampled.all())
    torch.testing.assert_close(k[sampled], kspace[sampled], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(k[~sampled], torch.zeros_like(k[~sampled]))  # the CNN filled the rest


def test_soft_dc_has_learnable_lambda():
    model = build_model("dccnn", dc="soft", cascades=2, dc_lambda=0.3)
    assert model.lambdas is not None and model.lambdas.requires_grad
    torch.testing.assert_close(model.lambdas, torch.full((2,), 0.3))


def test_soft_dc_lambda_stays_positive_under_training():
    # Plain SGD pushing lambda down hard: an unconstrained parameter goes negative in one step.
    model = build_model("dccnn", dc="soft", cascades=2, dc_lambda=0.05)
    opt = torch.optim.SGD([model.raw_lambdas], lr=100.0)
    for _ in range(5):
        opt.zero_grad()
        model.lambdas.sum().backward()
        opt.step()
        assert bool((model.lambdas > 0).all())


def test_soft_dc_loads_pre_constraint_checkpoints():
    model = build_model("dccnn", dc="soft", cascades=2, seed=0)
    old = {k: v for k, v in model.state_dict().items() if k != "raw_lambdas"}
    fresh = build_model("dccnn", dc="soft", cascades=2, seed=1)
    fresh.load_state_dict(old | {"lambdas": torch.tensor([0.25, 2.0])})
    torch.testing.assert_close(fresh.lambdas, torch.tensor([0.25, 2.0]))
    with pytest.raises(MrdistillError, match="lambda <= 0"):
        fresh.load_state_dict(old | {"lambdas": torch.tensor([0.25, -0.1])})
    with pytest.raises(MrdistillError, match="dc_lambda"):
        build_model("dccnn", dc="soft", dc_lambda=0.0)


def test_seeded_build_is_deterministic_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a, b = build_model("dccnn", seed=3), build_model("dccnn", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_bad_arguments():
    with pytest.raises(MrdistillError, match="unknown model 'unet9'"):
        build_model("unet9")
    with pytest.raises(MrdistillError, match="no argument 'depth'"):
        build_model("dccnn", depth=3)
    with pytest.raises(MrdistillError, match="activation"):
        build_model("dccnn", activation="gelu")


def test_sense_form_uses_every_coil_and_matches_single_coil_without_maps():
    """coil_maps=True: on single-coil k-space without maps it is the plain DC-CNN (same weights);
    on C coils the CNN sees S^H x and DC leaves an image already consistent with every coil
    unchanged (sum_c |S_c|^2 = 1), so the coils' extra information is kept."""
    plain = build_model("dccnn", in_channels=2, cascades=2, convs=3, channels=8, seed=3)
    sense = build_model("dccnn", in_channels=2, cascades=2, convs=3, channels=8, coil_maps=True, seed=3)
    assert sense.accepts_smaps and not sense.exportable and not plain.accepts_smaps
    batch = synthetic_batch(complex_input=True)
    torch.testing.assert_close(sense(batch.kspace, batch.mask).image, plain(batch.kspace, batch.mask).image)
    gen = torch.Generator().manual_seed(0)
    n, h, w, c = 2, 16, 16, 4
    raw = torch.complex(torch.randn(n, c, h, w, generator=gen), torch.randn(n, c, h, w, generator=gen))
    smaps = raw / raw.abs().square().sum(1, keepdim=True).sqrt()
    truth = torch.complex(torch.randn(n, 1, h, w, generator=gen), torch.randn(n, 1, h, w, generator=gen))
    mask = torch.zeros(1, 1, 1, w)
    mask[..., ::3] = 1
    kspace = fft2c(smaps * truth) * mask
    fixed = dc_network_image(image_to_network(truth, True), kspace, mask, True, None, smaps)
    torch.testing.assert_close(network_to_image(fixed, True), truth, atol=1e-5, rtol=1e-5)
    out = sense(kspace, mask, smaps=smaps, return_features=True)
    assert out.image.shape == (n, 2, h, w) and "cascade2.out" in out.features
    with pytest.raises(ValueError, match="needs smaps for 4-coil"):
        sense(kspace, mask)
    with pytest.raises(ValueError, match="built without coil_maps"):
        plain(kspace[:, :1], mask, smaps=smaps[:, :1])
    with pytest.raises(ValueError, match="coil_maps=True needs in_channels=2"):
        build_model("dccnn", in_channels=1, coil_maps=True)
