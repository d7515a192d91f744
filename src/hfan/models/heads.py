"""The HFAN decode head (SPEC §3): per-level fusion of image and flow features, then the SegFormer MLP decoder.

Module and attribute names follow the original (`hfan_vos.py`, mmcv `ConvModule`, mmseg's
`SelfAttentionBlock`) so that official checkpoints load by name; names that contradict what the module does
(`ca_layers` is the per-pixel branch, `pa_layers` the pooled one, SPEC §9.6) are kept for that reason.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfan.config import SELECT_METHODS

FUSION_INTER_CHANNELS = 16  # SPEC §3.2: HFAN(channels=C, r=C//16) gives C // r = 16 at every level


class ConvModule(nn.Module):
    """mmcv's ConvModule as HFAN uses it: 1x1 conv, then BN (conv without bias) or not (conv with bias), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x)


def category_prototypes(features: torch.Tensor, object_logits: torch.Tensor) -> torch.Tensor:
    """CSS (OCRNet's SpatialGatherModule, scale 1): per class, the softmax-over-space weighted mean feature.

    features (B,C,H,W), object_logits (B,K,H,W) -> prototypes (B,C,K,1).
    """
    weights = F.softmax(object_logits.flatten(2), dim=2)  # (B,K,HW)
    prototypes = torch.matmul(weights, features.flatten(2).transpose(1, 2))  # (B,K,C)
    return prototypes.transpose(1, 2).unsqueeze(3)


class PrimaryObjectContext(nn.Module):
    """POC: OCRNet's ObjectAttentionBlock (scale 1) on top of mmseg's SelfAttentionBlock, plus the bottleneck."""

    def __init__(self, channels: int, inter_channels: int):
        super().__init__()
        self.inter_channels = inter_channels
        self.key_project = nn.Sequential(ConvModule(channels, inter_channels, True),
                                         ConvModule(inter_channels, inter_channels, True))
        self.query_project = nn.Sequential(ConvModule(channels, inter_channels, True),
                                           ConvModule(inter_channels, inter_channels, True))
        self.value_project = ConvModule(channels, inter_channels, True)
        self.out_project = ConvModule(inter_channels, channels, True)
        self.bottleneck = ConvModule(channels * 2, channels, True)

    def forward(self, query_feats: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = query_feats.shape
        query = self.query_project(query_feats).flatten(2).transpose(1, 2)  # (B,HW,d)
        key = self.key_project(prototypes).flatten(2)  # (B,d,K)
        value = self.value_project(prototypes).flatten(2).transpose(1, 2)  # (B,K,d)
        similarity = F.softmax(torch.matmul(query, key) * self.inter_channels ** -0.5, dim=-1)
        context = torch.matmul(similarity, value).transpose(1, 2).reshape(batch, -1, height, width)
        context = self.out_project(context)
        return self.bottleneck(torch.cat([context, query_feats], dim=1))


def gate_branches(channels: int, inter_channels: int) -> tuple[nn.Sequential, nn.Sequential]:
    """FAT's `ca_layers` (per pixel) and `pa_layers` (globally pooled), SPEC §3.2 steps 6-7 / §9.5."""

    def layers():  # ConvModule (conv+bias, ReLU), BN, ReLU, ConvModule (conv+bias, ReLU), BN
        return [ConvModule(channels, inter_channels, False), nn.BatchNorm2d(inter_channels), nn.ReLU(),
                ConvModule(inter_channels, channels, False), nn.BatchNorm2d(channels)]

    return nn.Sequential(*layers()), nn.Sequential(nn.AdaptiveAvgPool2d(1), *layers())


class FeatureAlignment(nn.Module):
    """FAM: align image and flow features to the image's primary-object prototypes (SPEC §3.2 steps 1-4)."""

    def __init__(self, channels: int, inter_channels: int = FUSION_INTER_CHANNELS):
        super().__init__()
        self.poc = PrimaryObjectContext(channels, inter_channels)
        self.object_pred = ConvModule(channels, 2, False)

    def align(self, image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prototypes = category_prototypes(image, self.object_pred(image))
        # One POC (shared weights) for both modalities, keyed by the image prototypes (SPEC §9.8).
        return self.poc(image, prototypes), self.poc(flow, prototypes)

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        image_hat, flow_hat = self.align(image, flow)
        return image_hat + flow_hat


def adaptive_blend(ca_layers: nn.Module, pa_layers: nn.Module, image: torch.Tensor, flow: torch.Tensor):
    """FAT's gate: W = sigmoid(per-pixel + pooled branch of I + O); U = 2 W I + 2 (1 - W) O."""
    fused = image + flow
    gate = torch.sigmoid(ca_layers(fused) + pa_layers(fused))
    # The factor 2 is in the original code, not in the paper's figure (SPEC §9.7).
    return 2 * image * gate + 2 * flow * (1 - gate)


class FeatureAdaptation(nn.Module):
    """FAT: a per-pixel and a pooled gate blend the two modalities (SPEC §3.2 steps 5-9)."""

    def __init__(self, channels: int, inter_channels: int = FUSION_INTER_CHANNELS):
        super().__init__()
        self.ca_layers, self.pa_layers = gate_branches(channels, inter_channels)

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        return adaptive_blend(self.ca_layers, self.pa_layers, image, flow)


class HFANBlock(FeatureAlignment):
    """FAM then FAT on the aligned features; keys `poc.*`, `object_pred.*`, `ca_layers.*`, `pa_layers.*`."""

    def __init__(self, channels: int, inter_channels: int = FUSION_INTER_CHANNELS):
        super().__init__(channels, inter_channels)
        self.ca_layers, self.pa_layers = gate_branches(channels, inter_channels)

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        image_hat, flow_hat = self.align(image, flow)
        return adaptive_blend(self.ca_layers, self.pa_layers, image_hat, flow_hat)


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
        return F.relu(self.bn(self.conv(x)))


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
        size = fused[0].shape[2:]
        embedded = []
        for level in reversed(range(len(fused))):  # concat order c4, c3, c2, c1 (SPEC §3.1)
            x = getattr(self, f"linear_c{level + 1}")(fused[level])
            if level > 0:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            embedded.append(x)
        x = self.linear_fuse(torch.cat(embedded, dim=1))
        return self.linear_pred(self.dropout(x))
