import pytest

from conftest import synthetic_batch
from mrdistill.models import build_model
from mrdistill.models.flops import count_flops


def analytic_conv_flops(model, height: int, width: int) -> int:
    """sum over convs of 2 * Cin * Cout * 9 * H * W per slice (no bias), the documented convention."""
    return sum(2 * c.in_channels * c.out_channels * 9 * height * width
               for cascade in model.cascades for c in cascade.convs)


@pytest.mark.parametrize("convs", [3, 5])
def test_flops_match_analytic_conv_count(convs):
    batch = synthetic_batch(n=2, size=32)
    model = build_model("dccnn", convs=convs, seed=0)
    assert count_flops(model, batch.kspace, batch.mask) == 2 * analytic_conv_flops(model, 32, 32)


def test_flop_counter_mode_agrees():
    # FlopCounterMode's conv formula has no bias term either, and no FFT/DC formula.
    batch = synthetic_batch(n=1, size=16)
    model = build_model("dccnn", convs=3, cascades=2)
    assert (count_flops(model, batch.kspace, batch.mask, method="flop_counter")
            == count_flops(model, batch.kspace, batch.mask) == analytic_conv_flops(model, 16, 16))


def test_teacher_student_flop_ratio():
    batch = synthetic_batch(n=1, size=32)
    teacher = count_flops(build_model("dccnn", convs=5), batch.kspace, batch.mask)
    student = count_flops(build_model("dccnn", convs=3), batch.kspace, batch.mask)
    # per cascade (2*32 + 3*32*32) / (2*32 + 32*32) = 3136 / 1088
    assert teacher / student == pytest.approx(3136 / 1088) == pytest.approx(2.88, abs=0.01)
