"""The whole HFAN network: one shared encoder on [frames; flows], the HFAN head, 2-class logits at 1/4 size."""
from __future__ import annotations

import copy

import torch
from torch import nn

from hfan.config import ModelConfig, apply_overrides, validate
from hfan.models.decoder import HFANHead
from hfan.models.mit import MIT_SETTINGS, build_mit
from hfan.presets import get_preset

TIMM_PREFIX = "timm:"


class TimmBackbone(nn.Module):
    """Any timm model with `features_only`, the four levels at strides 4, 8, 16, 32, returned NCHW.

    Not part of the original, whose Swin/ResNet variants are unspecified (docs/design.md#other-backbones): an
    addition for ablations.
    """

    def __init__(self, name: str, drop_path_rate: float, img_size: int | None):
        super().__init__()
        try:
            import timm
        except ImportError as error:
            raise ImportError("timm backbones need the `backbones` extra: pip install 'hfan[backbones]'") from error
        probe = timm.create_model(name, pretrained=False, features_only=True)
        reductions = probe.feature_info.reduction()
        missing = [r for r in (4, 8, 16, 32) if r not in reductions]
        if missing:
            raise ValueError(f"timm model {name!r} has no feature levels at strides {missing} "
                             f"(it has {reductions}); HFAN needs strides 4, 8, 16, 32")
        out_indices = tuple(reductions.index(r) for r in (4, 8, 16, 32))
        kwargs = {"drop_path_rate": drop_path_rate}
        if img_size is not None:
            kwargs["img_size"] = img_size
        self.model = timm.create_model(name, pretrained=False, features_only=True, out_indices=out_indices, **kwargs)
        self.embed_dims = tuple(self.model.feature_info.channels())
        self.channels_last_output = str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(x)
        if self.channels_last_output:
            features = [f.permute(0, 3, 1, 2).contiguous() for f in features]
        return features


def build_backbone(config: ModelConfig) -> nn.Module:
    name = config.backbone.name
    if name.startswith(TIMM_PREFIX):
        return TimmBackbone(name[len(TIMM_PREFIX):], config.backbone.drop_path_rate, config.backbone.img_size)
    if name not in MIT_SETTINGS:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(MIT_SETTINGS)} or timm:<model name>")
    return build_mit(name, config.backbone.drop_path_rate)


class HFANSegmentor(nn.Module):
    """frames (B,3,H,W) and flow images (B,3,H,W), both normalised -> logits (B,2,H/4,W/4)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        validate(config)
        self.config = config
        self.backbone = build_backbone(config)
        head = config.decode_head
        self.decode_head = HFANHead(tuple(self.backbone.embed_dims), head.embed_dim, head.select_method,
                                    head.num_classes, head.dropout)

    def forward_features(self, frames: torch.Tensor, flows: torch.Tensor):
        """One encoder pass on frames and flows stacked along the batch, frames first (docs/design.md#shared-encoder).

        The `fw` and `im` heads read one half only: with the MiT encoder, which has no batch statistics (layer
        norms only), the other half is not computed (None per level) and the result is the same, at half the
        cost. timm backbones may hold batch norms, so they always see the stacked batch, as in the original.
        """
        if frames.shape != flows.shape:
            raise ValueError(f"frames {tuple(frames.shape)} and flows {tuple(flows.shape)} must have one shape")
        method = self.config.decode_head.select_method
        if method in ("fw", "im") and not isinstance(self.backbone, TimmBackbone):
            features = self.backbone(flows if method == "fw" else frames)
            unused = [None] * len(features)
            return (unused, features) if method == "fw" else (features, unused)
        batch = frames.shape[0]
        features = self.backbone(torch.cat([frames, flows], dim=0))
        return [f[:batch] for f in features], [f[batch:] for f in features]

    def forward_head(self, image_feats: list[torch.Tensor], flow_feats: list[torch.Tensor]) -> torch.Tensor:
        return self.decode_head(image_feats, flow_feats)

    def forward(self, frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        return self.forward_head(*self.forward_features(frames, flows))


def build_model(config: ModelConfig | str, options: list[str] | tuple[str, ...] = ()) -> HFANSegmentor:
    """A model with RANDOM weights: a ModelConfig, or a preset name (hfan-small, ...) with dotted `options`.
    Weights come from `hfan.load_model(checkpoint)`."""
    if isinstance(config, str):
        config = get_preset(config)
    elif options:
        config = copy.deepcopy(config)
    return HFANSegmentor(apply_overrides(config, options) if options else config)
