"""A SwinIR-style transformer (Liang et al. 2021): the heterogeneous-KD teacher of CHPNet.

Shallow conv -> `groups` residual groups (each `depth` Swin blocks with window self-attention,
shifted by half a window in every second block, and a closing 3x3 conv, with a residual over the
group) -> LayerNorm, conv, long skip from the shallow features -> pixel-shuffle upsampler -> conv.
We add the bicubic-interpolated input as a global residual (`global_residual=True`, the last conv
then starts at zero, so the untrained model is bicubic interpolation), which makes small budgets
train much faster; the paper's model has none (set it to False).

The defaults are sized for CPU training here; CHPNet's teacher is `embed_dim=180, groups=6, depth=6,
heads=6, window=8, mlp_ratio=2, upsample_channels=64, global_residual=False` (about 11.8M parameters).
scale >= 2: super-resolution (`input_kind = "lowres"`); scale = 1: k-space reconstruction (zero-filled
input, no upsampler, residual, then a hard DC step).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mrdistill.data.superres import bicubic_upsample
from mrdistill.errors import MrdistillError
from mrdistill.models.base import ReconOutput
from mrdistill.models.contract import ReconModule
from mrdistill.models.registry import register_model
from mrdistill.models.vdsr import check_input_channels, check_sr_scale
from mrdistill.physics.consistency import dc_network_image
from mrdistill.physics.fft import ifft2c, image_to_network


def window_partition(x: Tensor, ws: int) -> Tensor:
    """float (N, H, W, C) -> (N, nW, ws*ws, C): non-overlapping ws x ws windows, row-major."""
    n, h, w, c = x.shape
    x = x.view(n, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // ws) * (w // ws), ws * ws, c)


def window_merge(windows: Tensor, ws: int, h: int, w: int) -> Tensor:
    """(N, nW, ws*ws, C) -> (N, H, W, C); inverse of `window_partition`."""
    n, _, _, c = windows.shape
    x = windows.view(n, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h, w, c)


def relative_position_index(ws: int) -> Tensor:
    """long (ws*ws, ws*ws): index into a ((2ws-1)^2)-entry bias table for every token pair."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # (2, L)
    rel = coords[:, :, None] - coords[:, None, :] + (ws - 1)  # (2, L, L), each in [0, 2ws-2]
    return rel[0] * (2 * ws - 1) + rel[1]


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> Tensor:
    """float32 (nW, L, L): 0 between tokens of the same region of the cyclically shifted image,
    -inf-like (-100) across regions, so a shifted window never mixes opposite image borders."""
    region = torch.zeros(1, h, w, 1)
    label = 0
    for ys in (slice(0, h - ws), slice(h - ws, h - shift), slice(h - shift, h)):
        for xs in (slice(0, w - ws), slice(w - ws, w - shift), slice(w - shift, w)):
            region[:, ys, xs] = label
            label += 1
    win = window_partition(region, ws)[0, :, :, 0]  # (nW, L)
    same = win[:, :, None] == win[:, None, :]
    return torch.where(same, 0.0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window with a learned relative-position bias."""

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        if dim % heads:
            raise MrdistillError(f"embed_dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: float (N, nW, L, C); mask: (nW, L, L) additive or None -> (N, nW, L, C)."""
        n, nw, length, c = x.shape
        qkv = self.qkv(x).view(n, nw, length, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each (N, nW, heads, L, d)
        bias = self.bias_table[self.bias_index.flatten()].view(length, length, -1).permute(2, 0, 1)
        attn_mask = bias if mask is None else bias[None] + mask[:, None]  # (nW|1, heads, L, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype))
        return self.proj(out.transpose(2, 3).reshape(n, nw, length, c))


class SwinBlock(nn.Module):
    """LN -> (shifted) window attention -> residual; LN -> MLP (GELU) -> residual."""

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """x: float (N, H, W, C) tokens (H, W multiples of the window) -> (N, H, W, C)."""
        _, h, w, _ = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), mask if self.shift else None)
        y = window_merge(y, self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class ResidualGroup(nn.Module):
    """`depth` Swin blocks (shift 0, ws/2, 0, ...), a 3x3 conv, and a residual over the group."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, (window // 2) if i % 2 else 0, mlp_ratio) for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x: float (N, C, H, W) -> (N, C, H, W)."""
        t = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            t = block(t, mask)
        return x + self.conv(t.permute(0, 3, 1, 2))


def pixel_shuffle_upsampler(channels: int, scale: int) -> nn.Sequential:
    """conv(F -> r^2 F) + PixelShuffle(r), repeated for scale 2^k; one r = 3 step for scale 3."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(scale.bit_length() - 1):
            layers += [nn.Conv2d(channels, 4 * channels, 3, padding=1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(channels, 9 * channels, 3, padding=1), nn.PixelShuffle(3)]
    else:
        raise MrdistillError(f"swinir supports scales 1, 3 and powers of 2, got {scale}")
    return nn.Sequential(*layers)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad (N, C, H, W) at the bottom/right to multiples of `multiple` (reflect where possible)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


@register_model("swinir")
class SwinIR(ReconModule):
    """forward(lowres float32 (N, in_channels, h, w), None) for scale >= 2, or forward(kspace
    complex64 (N, C, H, W), mask) for scale = 1 -> ReconOutput(image float32 (N, in_channels,
    s*h, s*w), features: "shallow", "group{i}" (1-based), "body" (all (N, embed_dim, h, w): token
    maps as images), "upsampler" (N, upsample_channels, s*h, s*w; scale >= 2 only), "out")."""

    input_kind = "kspace"

    def __init__(self, scale: int = 1, in_channels: int = 1, embed_dim: int = 32, groups: int = 2,
                 depth: int = 2, heads: int = 4, window: int = 8, mlp_ratio: float = 2.0,
                 upsample_channels: int | None = None, global_residual: bool = True) -> None:
        super().__init__()
        check_sr_scale(scale)
        if in_channels not in (1, 2):
            raise MrdistillError(f"in_channels must be 1 (real) or 2 (complex), got {in_channels}")
        if window < 2 or groups < 1 or depth < 1:
            raise MrdistillError("swinir needs window >= 2, groups >= 1 and depth >= 1")
        self.scale, self.in_channels, self.window = scale, in_channels, window
        self.global_residual = global_residual
        self.input_kind = "lowres" if scale > 1 else "kspace"
        self.complex_input, self.image_channels = in_channels == 2, in_channels
        self.conv_first = nn.Conv2d(in_channels, embed_dim, 3, padding=1)
        self.groups = nn.ModuleList(ResidualGroup(embed_dim, depth, heads, window, mlp_ratio)
                                    for _ in range(groups))
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1)
        if scale > 1:
            feat = upsample_channels or embed_dim
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(embed_dim, feat, 3, padding=1),
                                                      nn.LeakyReLU(inplace=True))
            self.upsample = pixel_shuffle_upsampler(feat, scale)
            self.conv_last = nn.Conv2d(feat, in_channels, 3, padding=1)
        else:
            self.conv_last = nn.Conv2d(embed_dim, in_channels, 3, padding=1)
        if global_residual:  # start as the interpolated (or zero-filled) input itself
            nn.init.zeros_(self.conv_last.weight)
            nn.init.zeros_(self.conv_last.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, *,
                return_features: bool = False) -> ReconOutput:
        features: dict[str, Tensor] = {}
        if self.input_kind == "lowres":
            check_input_channels(x, self.in_channels, "swinir")
            inp = x
        else:
            kspace = x
            inp = image_to_network(ifft2c(kspace), self.in_channels == 2)
        h, w = inp.shape[-2:]
        padded = pad_to_multiple(inp, self.window)
        hp, wp = padded.shape[-2:]
        shift_mask = shifted_window_mask(hp, wp, self.window, self.window // 2).to(inp.device)
        shallow = self.conv_first(padded)
        feat = shallow
        for i, group in enumerate(self.groups):
            feat = group(feat, shift_mask)
            if return_features:
                features[f"group{i + 1}"] = feat[..., :h, :w]
        feat = self.norm(feat.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        body = self.conv_after_body(feat) + shallow
        s = self.scale
        if self.input_kind == "lowres":
            up = self.upsample(self.conv_before_upsample(body))
            out = self.conv_last(up)[..., :s * h, :s * w]
            if self.global_residual:
                out = out + bicubic_upsample(inp, s)
        else:
            up = None
            out = self.conv_last(body)[..., :h, :w]
            if self.global_residual:
                out = out + inp
            assert mask is not None, "k-space reconstruction needs the sampling mask"
            out = dc_network_image(out, kspace, mask, self.in_channels == 2)
        if return_features:
            features["shallow"] = shallow[..., :h, :w]
            features["body"] = body[..., :h, :w]
            if up is not None:
                features["upsampler"] = up[..., :s * h, :s * w]
            features["out"] = out
        return ReconOutput(out, features)
