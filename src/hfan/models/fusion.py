"""HFAN's per-level fusion of image and flow features (docs/design.md#fusion-modules): FAM aligns, FAT adapts,
the HFAN block does both.

Module and attribute names follow the original (`hfan_vos.py`, mmcv `ConvModule`, mmseg's
`SelfAttentionBlock`) so that official checkpoints load by name; names that contradict what the module does
(`ca_layers` is the per-pixel branch, `pa_layers` the pooled one, docs/design.md#quirk-swapped-branch-names) are
kept for that reason.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfan.models import onednn

# HFAN(channels=C, r=C//16) gives C // r = 16 at every level (docs/design.md#fusion-modules).
FUSION_INTER_CHANNELS = 16


class ConvModule(nn.Module):
    """mmcv's ConvModule as HFAN uses it: 1x1 conv, then BN (conv without bias) or not (conv with bias), ReLU.

    In eager fp32 CPU inference the three are one oneDNN call, the BN folded into the convolution
    (hfan.models.onednn.conv_pointwise): the same function, the output written once instead of three times."""

    fused_kernels = True

    def __init__(self, in_channels: int, out_channels: int, norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=not norm)
        self.bn = nn.BatchNorm2d(out_channels) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if onednn.runs_fused(self, x):
            return onednn.conv_pointwise(self.conv, x, "relu", self.bn)
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
    """FAT's `ca_layers` (per pixel) and `pa_layers` (globally pooled): docs/design.md#fat steps 2-3,
    docs/design.md#quirk-double-activations."""

    def layers():  # ConvModule (conv+bias, ReLU), BN, ReLU, ConvModule (conv+bias, ReLU), BN
        return [ConvModule(channels, inter_channels, False), nn.BatchNorm2d(inter_channels), nn.ReLU(),
                ConvModule(inter_channels, channels, False), nn.BatchNorm2d(channels)]

    return nn.Sequential(*layers()), nn.Sequential(nn.AdaptiveAvgPool2d(1), *layers())


class FeatureAlignment(nn.Module):
    """FAM: align image and flow features to the image's primary-object prototypes (docs/design.md#fam)."""

    def __init__(self, channels: int, inter_channels: int = FUSION_INTER_CHANNELS):
        super().__init__()
        self.poc = PrimaryObjectContext(channels, inter_channels)
        self.object_pred = ConvModule(channels, 2, False)

    def align(self, image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prototypes = category_prototypes(image, self.object_pred(image))
        # One POC (shared weights) for both modalities, keyed by the image prototypes (docs/design.md#quirk-shared-poc).
        return self.poc(image, prototypes), self.poc(flow, prototypes)

    def forward(self, image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        image_hat, flow_hat = self.align(image, flow)
        return image_hat + flow_hat


def adaptive_blend(ca_layers: nn.Module, pa_layers: nn.Module, image: torch.Tensor, flow: torch.Tensor):
    """FAT's gate: W = sigmoid(per-pixel + pooled branch of I + O); U = 2 W I + 2 (1 - W) O."""
    fused = image + flow
    gate = torch.sigmoid(ca_layers(fused) + pa_layers(fused))
    # The factor 2 is in the original code, not in the paper's figure (docs/design.md#quirk-factor-two).
    return 2 * image * gate + 2 * flow * (1 - gate)


class FeatureAdaptation(nn.Module):
    """FAT: a per-pixel and a pooled gate blend the two modalities (docs/design.md#fat)."""

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
