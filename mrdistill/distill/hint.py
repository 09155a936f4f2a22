"""FitNets hints (Romero et al. 2015): a learned regressor maps the student's (guided) feature to
the teacher's (hint) feature, and the L2 distance between the two is minimised.

The regressor is a 1x1 convolution per pair (student channels -> teacher channels). It belongs to the
student side: it is a submodule of the loss, so the optimizer and the checkpoint's "extra" see it, and
it is dropped at export (only the model's weights are exported). Its size is known only once the
features are seen: `setup(student, teacher, sample)` (called by `train.loop.fit` before the
optimizer is built) creates it; `channels={student_key: [c_in, c_out]}` creates it up front instead.
When the channel counts agree the regressor starts as the identity, so training starts from plain
feature matching and the loss is exactly zero for identical features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.sample import Sample
from mrdistill.distill.pairs import gather, pairs_of, resolve_pairs, shape_error
from mrdistill.distill.registry import register_kd
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput


def make_regressor(c_in: int, c_out: int, seed: int) -> nn.Conv2d:
    """1x1 conv c_in -> c_out: identity when c_in == c_out, else default init from `seed`
    (drawn inside a forked RNG, so global RNG state is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        conv = nn.Conv2d(c_in, c_out, kernel_size=1)
    if c_in == c_out:
        with torch.no_grad():
            conv.weight.copy_(torch.eye(c_in)[:, :, None, None])
            conv.bias.zero_()
    return conv


def hint_distance(regressed: Tensor, hint: Tensor) -> Tensor:
    """Mean squared difference float (N, C, H, W) x2 -> scalar (FitNets' 1/2||.||^2 up to a constant,
    normalised by the element count so the weight does not depend on the image size)."""
    return F.mse_loss(regressed, hint)


@register_kd("hint")
class Hint(nn.Module):
    """Mean over pairs of `||r(F_S) - F_T||^2 / numel`; `regressor=False` compares the features
    directly (what SFT-KD-Recon's code calls FitNets), which needs equal shapes.

    Paper: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015.

    Formula: L = mean over pairs of ||r(F_S) - F_T||^2 / numel, r a 1x1 conv regressor (student
        side).

    In a stage of a config (`mrdistill list` names every loss):

    ```yaml
    kd:
      - {name: hint, weight: 1.0, kwargs: {regressor: true}}
    ```
    """

    needs_features = True

    def __init__(self, pairs: dict[str, str] | None = None, regressor: bool = True,
                 channels: dict[str, list[int]] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.pairs = resolve_pairs(pairs, "hint")
        self.use_regressor, self.seed = bool(regressor), int(seed)
        self.regressors = nn.ModuleDict()  # key: position of the pair ("0", "1", ...)
        if channels and self.pairs is None:
            raise MrdistillError("hint: channels are given per student key, so they need "
                                 "explicit pairs {student_key: teacher_key}")
        for i, s_key in enumerate(self.pairs or {}):
            if channels and s_key in channels:
                c_in, c_out = (int(c) for c in channels[s_key])
                self.regressors[str(i)] = make_regressor(c_in, c_out, self.seed + i)
        if channels and set(channels) - set(self.pairs or {}):
            raise MrdistillError(f"hint: channels given for {sorted(set(channels) - set(self.pairs))}, "
                                 f"which are not student keys of the pairs; valid: "
                                 f"{', '.join(self.pairs)}")

    def setup(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> None:
        """Create missing regressors from the feature shapes and check every pair."""
        pairs = pairs_of(self, student, teacher)
        for i, (s_key, t_key, fs, ft) in enumerate(gather(student, teacher, pairs)):
            self._check(s_key, t_key, fs, ft, teacher.features)
            if self.use_regressor and str(i) not in self.regressors:
                self.regressors[str(i)] = make_regressor(fs.shape[1], ft.shape[1],
                                                         self.seed + i).to(fs.device)

    def _check(self, s_key: str, t_key: str, fs: Tensor, ft: Tensor,
               teacher_features: dict[str, Tensor]) -> None:
        same = fs.shape[2:] == ft.shape[2:] if self.use_regressor else fs.shape[1:] == ft.shape[1:]
        if not same:
            why = " in spatial size" if self.use_regressor else " (no regressor: regressor is false)"
            raise shape_error("hint", s_key, t_key, fs, ft, teacher_features, why)

    def forward(self, student: ReconOutput, teacher: ReconOutput, sample: Sample) -> Tensor:
        pairs = pairs_of(self, student, teacher)
        if self.use_regressor and len(self.regressors) < len(pairs):
            self.setup(student, teacher, sample)  # direct use without `fit`: create on first call
        losses = []
        for i, (s_key, t_key, fs, ft) in enumerate(gather(student, teacher, pairs)):
            self._check(s_key, t_key, fs, ft, teacher.features)
            if self.use_regressor:
                reg = self.regressors[str(i)]
                if reg.in_channels != fs.shape[1] or reg.out_channels != ft.shape[1]:
                    raise MrdistillError(
                        f"hint pair {s_key}->{t_key}: regressor maps {reg.in_channels}->"
                        f"{reg.out_channels} channels but the features have {fs.shape[1]}->"
                        f"{ft.shape[1]}; fix `channels` or leave it out")
                fs = reg(fs)
            losses.append(hint_distance(fs, ft))
        return torch.stack(losses).mean()
