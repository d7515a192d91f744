"""Mix Transformer (MiT-b0 ... b5), the SegFormer encoder, as HFAN uses it (docs/design.md#mit-variants).

Parameter names equal those of SegFormer's `mix_transformer.py` (and so of its ImageNet files and, under the
prefix `backbone.backbone.`, of the official HFAN checkpoints). Differences from that file that do not change
what is computed: attention runs through `scaled_dot_product_attention`, and the unused classifier is absent.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hfan.models import onednn


@dataclass(frozen=True)
class MiTSettings:
    embed_dims: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    num_heads: tuple[int, int, int, int] = (1, 2, 5, 8)
    sr_ratios: tuple[int, int, int, int] = (8, 4, 2, 1)
    mlp_ratios: tuple[int, int, int, int] = (4, 4, 4, 4)


# docs/design.md#mit-variants (the hard-coded mit_b* classes of SegFormer).
MIT_SETTINGS: dict[str, MiTSettings] = {
    "mit_b0": MiTSettings((32, 64, 160, 256), (2, 2, 2, 2)),
    "mit_b1": MiTSettings((64, 128, 320, 512), (2, 2, 2, 2)),
    "mit_b2": MiTSettings((64, 128, 320, 512), (3, 4, 6, 3)),
    "mit_b3": MiTSettings((64, 128, 320, 512), (3, 4, 18, 3)),
    "mit_b4": MiTSettings((64, 128, 320, 512), (3, 8, 27, 3)),
    "mit_b5": MiTSettings((64, 128, 320, 512), (3, 6, 40, 3)),
}

# Blocks and stage-end norms use eps 1e-6; patch-embed and attention sr-norms keep 1e-5
# (docs/design.md#quirk-layernorm-eps).
BLOCK_NORM_EPS = 1e-6


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth per sample (timm's drop_path), the residual branch dropped for whole samples."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class OverlapPatchEmbed(nn.Module):
    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        height, width = x.shape[2:]
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class Attention(nn.Module):
    """Efficient self-attention: keys and values from a spatially reduced (sr x sr strided conv) sequence."""

    fused_kernels = True  # oneDNN's linear layers in CPU inference (hfan.models.onednn)

    def __init__(self, dim: int, num_heads: int, sr_ratio: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.sr_ratio = sr_ratio
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, sr_ratio, sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, height: int, width: int, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The attention's output, plus `residual` where one is given (the block's skip connection)."""
        fused = onednn.runs_fused(self, x)
        batch, tokens, channels = x.shape
        head_dim = channels // self.num_heads
        q = onednn.linear(self.q, x, fused).reshape(batch, tokens, self.num_heads, head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(batch, channels, height, width))
            x = self.norm(reduced.flatten(2).transpose(1, 2))
        kv = onednn.linear(self.kv, x, fused).reshape(batch, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        # Default scale head_dim**-0.5 is the original's qk_scale (None in every mit_b* class).
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return onednn.linear(self.proj, out.transpose(1, 2).reshape(batch, tokens, channels), fused, residual)


class DWConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(batch, channels, height, width))
        return x.flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    # Inference on the CPU runs the depth-wise convolution and the GELU after it as one oneDNN call (the exact erf
    # GELU as a post-op: the kernel inductor uses), so the hidden map is written and read once instead of three
    # times, and the linear layers as oneDNN's (onednn.linear). Training, other devices and dtypes run the original's
    # operators; both compute the same function (tests/models/test_models.py). benchmarks/model_speed.py compares
    # them in one run: docs/speed.md.
    fused_kernels = True

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, height: int, width: int, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The block's feed-forward output, plus `residual` where one is given (the block's skip connection)."""
        if onednn.runs_fused(self, x):
            hidden = self._conv_gelu_onednn(onednn.linear(self.fc1, x, True), height, width)
            return onednn.linear(self.fc2, hidden, True, residual)
        return onednn.linear(self.fc2, F.gelu(self.dwconv(self.fc1(x), height, width)), False, residual)

    def _conv_gelu_onednn(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = x.shape
        x = onednn.conv_pointwise(self.dwconv.dwconv, x.transpose(1, 2).reshape(batch, channels, height, width),
                                  "gelu")
        return x.flatten(2).transpose(1, 2)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int, drop_path_rate: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = Attention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if not self.training:  # drop_path is the identity: the skip connections go inside (one fused call each)
            x = self.attn(self.norm1(x), height, width, residual=x)
            return self.mlp(self.norm2(x), height, width, residual=x)
        x = x + drop_path(self.attn(self.norm1(x), height, width), self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x), height, width), self.drop_path_rate, self.training)


class MixVisionTransformer(nn.Module):
    """Four stages; `forward` returns the four NCHW stage outputs at strides 4, 8, 16, 32.

    In eager fp32 CPU inference (`onednn.runs_fused`) the outputs are the tokens' own memory, NCHW views with
    channels-last strides, instead of the original's contiguous copies: oneDNN's convolutions and bilinear
    resizing downstream read channels-last natively, so the copy and the layout changes after it are saved
    (docs/speed.md). Elsewhere (training, export, compile, other devices) they are contiguous, as in the original."""

    fused_kernels = True

    def __init__(self, settings: MiTSettings, in_chans: int = 3, drop_path_rate: float = 0.1):
        super().__init__()
        self.settings = settings
        self.embed_dims = settings.embed_dims
        rates = torch.linspace(0, drop_path_rate, sum(settings.depths)).tolist()
        start = 0
        for stage in range(4):
            dim = settings.embed_dims[stage]
            patch, stride, inputs = (7, 4, in_chans) if stage == 0 else (3, 2, settings.embed_dims[stage - 1])
            setattr(self, f"patch_embed{stage + 1}", OverlapPatchEmbed(patch, stride, inputs, dim))
            blocks = [
                Block(dim, settings.num_heads[stage], settings.mlp_ratios[stage], settings.sr_ratios[stage],
                      rates[start + j])
                for j in range(settings.depths[stage])
            ]
            setattr(self, f"block{stage + 1}", nn.ModuleList(blocks))
            setattr(self, f"norm{stage + 1}", nn.LayerNorm(dim, eps=BLOCK_NORM_EPS))
            start += settings.depths[stage]
        self.init_weights()

    def init_weights(self) -> None:
        """SegFormer's `_init_weights`: trunc-normal linears, fan-out normal convs, unit norms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, (2.0 / fan_out) ** 0.5)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        channels_last = onednn.runs_fused(self, x)
        for stage in range(1, 5):
            x, height, width = getattr(self, f"patch_embed{stage}")(x)
            for block in getattr(self, f"block{stage}"):
                x = block(x, height, width)
            x = getattr(self, f"norm{stage}")(x)
            x = x.reshape(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
            if not channels_last:
                x = x.contiguous()
            outputs.append(x)
        return outputs

    forward = forward_features


def build_mit(name: str, drop_path_rate: float = 0.1) -> MixVisionTransformer:
    if name not in MIT_SETTINGS:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(MIT_SETTINGS)}")
    return MixVisionTransformer(MIT_SETTINGS[name], drop_path_rate=drop_path_rate)
