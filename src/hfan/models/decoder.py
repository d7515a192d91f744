"""The HFAN decode head (docs/design.md#decode-head): the per-level fusion of hfan.models.fusion, then the
SegFormer MLP decoder.

Module and attribute names follow the original (`hfan_vos.py`) so that official checkpoints load by name.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfan.config import SELECT_METHODS
from hfan.models.fusion import FeatureAdaptation, FeatureAlignment, HFANBlock
from hfan.models.onednn import fold_batch_norm

# select_method -> (prefix of the per-level modules in the state dict, module class or None)
FUSION_MODULES = {
    "im": (None, None),
    "fw": (None, None),
    "base": (None, None),
    "fam": ("fam", FeatureAlignment),
    "fat": ("fat", FeatureAdaptation),
    "hfan": ("hfan", HFANBlock),
}


class MLP(nn.Module):
    """SegFormer's per-level linear embedding: (B,C,H,W) -> (B,E,H,W) through a Linear on the tokens."""

    def __init__(self, input_dim: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Linear(input_dim, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        return self.proj(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(batch, -1, height, width)


class LinearFuse(nn.Module):
    """1x1 conv without bias, (Sync)BN, ReLU; the names `conv`/`bn` are those of the checkpoints."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_activate(self.conv(x))

    def norm_activate(self, x: torch.Tensor) -> torch.Tensor:
        """BN and ReLU on the convolution's output (HFANHead.folded_fuse computes that output another way)."""
        return F.relu(self.bn(x))


class HFANHead(nn.Module):
    """Fuse (image, flow) features per level as `select_method` says, then decode to 2-class logits at 1/4."""

    def __init__(self, in_channels: tuple[int, ...], embed_dim: int, select_method: str = "hfan",
                 num_classes: int = 2, dropout: float = 0.1):
        super().__init__()
        if select_method not in SELECT_METHODS:
            raise ValueError(f"unknown select_method {select_method!r}; valid: {', '.join(SELECT_METHODS)}")
        self.select_method = select_method
        prefix, fusion_class = FUSION_MODULES[select_method]
        self.fusion_names = []
        if fusion_class is not None:
            for level, channels in enumerate(in_channels, start=1):
                setattr(self, f"{prefix}{level}", fusion_class(channels))
                self.fusion_names.append(f"{prefix}{level}")
        for level, channels in enumerate(in_channels, start=1):
            setattr(self, f"linear_c{level}", MLP(channels, embed_dim))
        self.linear_fuse = LinearFuse(embed_dim * len(in_channels), embed_dim)
        self.dropout = nn.Dropout2d(dropout)
        self.linear_pred = nn.Conv2d(embed_dim, num_classes, 1)

    def fuse(self, level: int, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        if self.select_method == "im":
            return image
        if self.select_method == "fw":
            return flow
        if self.select_method == "base":
            return image + flow
        return getattr(self, self.fusion_names[level])(image, flow)

    def forward(self, image_feats: list[torch.Tensor], flow_feats: list[torch.Tensor]) -> torch.Tensor:
        fused = [self.fuse(level, image, flow) for level, (image, flow) in enumerate(zip(image_feats, flow_feats))]
        if self.fold_linear_fuse and not self.training:
            # the BN folded in as well (eval: running statistics); the ReLU then in place on the one output
            x = F.relu(self.folded_fuse(fused, self.linear_fuse.bn), inplace=True)
        else:
            x = self.linear_fuse.norm_activate(self.concat_fuse(fused))
        return self.linear_pred(self.dropout(x))

    # Inference (eval mode) folds the per-level embeddings into the fuse convolution (`folded_fuse`); training
    # runs the original's concatenation (`concat_fuse`), so the trained weights do not depend on the fold. Both compute the
    # same function; benchmarks/model_speed.py (variant `unfolded`) compares them in one run: docs/speed.md.
    fold_linear_fuse = True

    def concat_fuse(self, fused: list[torch.Tensor]) -> torch.Tensor:
        """The original: embed each level (Linear), upsample to 1/4, concatenate (c4, c3, c2, c1:
        docs/design.md#decode-head), 1x1 conv; before BN."""
        size = fused[0].shape[2:]
        embedded = []
        for level in reversed(range(len(fused))):
            x = getattr(self, f"linear_c{level + 1}")(fused[level])
            if level > 0:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            embedded.append(x)
        return self.linear_fuse.conv(torch.cat(embedded, dim=1))

    def folded_fuse(self, fused: list[torch.Tensor], norm: nn.BatchNorm2d | None = None) -> torch.Tensor:
        """`concat_fuse` reordered: the fuse conv's slice for a level composed with that level's Linear is one
        C_level -> E map, applied at the level's own resolution before the upsampling. Bilinear resizing acts on
        each channel alone and its weights sum to 1, so it commutes with a per-pixel linear map and carries a
        constant through unchanged: the biases fold into one. No concatenated (B, 4E, H/4, W/4) tensor, and the
        E x 4E convolution at 1/4 resolution (19 % of HFAN-Small's FLOPs) is gone; the result equals
        `concat_fuse` up to float rounding (tests/models/test_decoder_fold.py). With `norm` (a BN at its running
        statistics, per output channel: another linear map) folded in too, the result is `norm(concat_fuse)`."""
        size = fused[0].shape[2:]
        fuse_weight = self.linear_fuse.conv.weight.flatten(1)  # (E, 4E), input blocks in order c4, c3, c2, c1
        embed_dim = fuse_weight.shape[0]
        weights, bias = {}, 0
        if norm is not None:  # scales the fuse convolution's rows; its shift starts the folded bias
            fuse_weight, bias = fold_batch_norm(fuse_weight, None, norm)
        for block, level in enumerate(reversed(range(len(fused)))):
            embed = getattr(self, f"linear_c{level + 1}").proj
            part = fuse_weight[:, block * embed_dim:(block + 1) * embed_dim]
            weights[level] = (part @ embed.weight)[:, :, None, None]
            bias = bias + part @ embed.bias
        # The finest level first: its convolution carries the folded bias and its output takes the others in place.
        total = F.conv2d(fused[0], weights[0], bias)
        for level in range(1, len(fused)):
            total += F.interpolate(F.conv2d(fused[level], weights[level]), size=size, mode="bilinear",
                                   align_corners=False)
        return total
