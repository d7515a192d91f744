"""Typed configuration: the model presets named after the paper, and dotted command-line overrides.

Every default that reproduces the paper lives here, with the SPEC section it comes from.
"""
from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field

# SPEC §3.3: the per-level fusion, in the order of the paper's ablation table.
SELECT_METHODS = ("im", "fw", "base", "fam", "fat", "hfan")

# SPEC §6.2 step 6 / §9.14: ImageNet statistics, RGB order, for the frame and the flow image alike.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass
class BackboneConfig:
    name: str = "mit_b1"  # SPEC §2.2; any name of hfan.models.mit.MIT_SETTINGS
    drop_path_rate: float = 0.1  # SPEC §2.2: hard-coded in the mit_b* classes
    img_size: int | None = None  # only for timm backbones that fix their input size (e.g. Swin)


@dataclass
class HeadConfig:
    select_method: str = "hfan"  # SPEC §3.3
    embed_dim: int = 256  # SPEC §3: 256 small, 768 medium/large
    num_classes: int = 2
    dropout: float = 0.1  # SPEC §3.1: Dropout2d before linear_pred


@dataclass
class InferenceConfig:
    """SPEC §7: the official test path of the refine configs."""

    mode: str = "slide"  # "slide" (refine configs) or "whole" (160k configs, stage-1 validation)
    img_scale: tuple[int, int] = (2048, 512)  # keep-ratio resize box
    size_divisor: int = 32  # ResizeToMultiple, sides rounded UP
    crop_size: int = 512
    stride: int = 271
    flip: bool = False
    ratios: tuple[float, ...] = (1.0,)  # --aug-test: (0.75, 1.0, 1.75) with flip
    # Not in the original: `segment_video` averages each frame's foreground probability with those of this many
    # frames before and after it (fewer at the ends) and thresholds the mean at 0.5. 0: off (the paper's test).
    temporal_mean: int = 0


AUG_TEST_RATIOS = (0.75, 1.0, 1.75)  # SPEC §7: hard-coded in tools/test.py

FLOW_METHODS = ("dis", "farneback", "raft_small", "raft_large")
CAMERA_MOTION_MODELS = ("none", "affine", "homography")  # hfan.flow.camera


@dataclass
class FlowConfig:
    """How the flow a model expects is made at test time; `hfan segment` and `hfan prepare` follow it.

    The official checkpoints were trained on raw RAFT flow (SPEC §6.1): camera_motion `none`. Our default model
    was trained on DIS flow with the camera motion removed (hfan.flow.camera), which it needs at test time too.
    """

    method: str = "dis"  # the estimator `hfan segment` uses when --flow is not given
    dis_preset: str = "medium"
    camera_motion: str = "none"  # none | affine | homography: fitted to the flow and subtracted before encoding
    scale: float = 1.0  # frames are resized by this factor before flow estimation (speed); 1 = full resolution


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    decode_head: HeadConfig = field(default_factory=HeadConfig)
    test: InferenceConfig = field(default_factory=InferenceConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        return _from_dict(cls, data)


def _from_dict(cls, data):
    kwargs = {}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; valid: {sorted(names)}")
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _preset(backbone: str, embed_dim: int) -> ModelConfig:
    return ModelConfig(BackboneConfig(name=backbone), HeadConfig(embed_dim=embed_dim))


# The paper's models (SPEC §1, local_configs/hfan/hfan.{small,medium,large}); hfan-b0 is ours, for fast tests.
PRESETS: dict[str, ModelConfig] = {
    "hfan-b0": _preset("mit_b0", 256),
    "hfan-small": _preset("mit_b1", 256),
    "hfan-medium": _preset("mit_b2", 768),
    "hfan-large": _preset("mit_b3", 768),
}


def _default_model() -> ModelConfig:
    """Our default model (not in the paper): MiT-b0, flow branch only, trained on synthetic composites of real
    photographs and clip-art shapes (docs/default_model.md). Whole-image test at a short side of 128 pixels,
    the training scale; DIS flow with the camera motion removed, as in its training; the foreground probability
    averaged over 7 frames (docs/default_model.md: +0.05 J on davis16_mini)."""
    config = _preset("mit_b0", 256)
    config.decode_head.select_method = "fw"
    config.test = InferenceConfig(mode="whole", img_scale=(2048, 128), temporal_mean=3)
    config.flow = FlowConfig(method="dis", dis_preset="medium", camera_motion="affine", scale=1.0)
    return config


PRESETS["hfan-default"] = _default_model()


def get_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def _coerce(text: str, hint, path: str):
    origin = typing.get_origin(hint)
    if hint is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"option {path}: expected true/false, got {text!r}")
    if hint in (int, float, str):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"option {path}: expected {hint.__name__}, got {text!r}") from None
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0]
        parts = [p for p in text.strip("()[] ").split(",") if p.strip()]
        values = tuple(_coerce(p.strip(), item, path) for p in parts)
        if len(args) == 2 and args[1] is Ellipsis:
            return values
        if len(values) != len(args):
            raise ValueError(f"option {path}: expected {len(args)} comma-separated values, got {text!r}")
        return values
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(hint)
        if type(None) in members and text.lower() == "none":  # before `str`, which would take "none" as a name
            return None
        for arg in members:
            if arg is not type(None):
                return _coerce(text, arg, path)
    raise ValueError(f"option {path}: cannot parse a value of type {hint}")


def apply_overrides(config, overrides: typing.Iterable[str], strip_prefixes: tuple[str, ...] = ("model.",)):
    """Apply `a.b.c=value` strings to a dataclass config in place and return it.

    The original's spelling `model.decode_head.select_method=im` is accepted: the prefixes in
    `strip_prefixes` are removed first. An unknown field is an error that lists the valid ones.
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"option {item!r} is not of the form key.path=value")
        path, text = item.split("=", 1)
        path = path.strip()
        for prefix in strip_prefixes:
            if path.startswith(prefix):
                path = path[len(prefix):]
        target = config
        parts = path.split(".")
        for depth, name in enumerate(parts):
            fields = {f.name for f in dataclasses.fields(target)}
            if name not in fields:
                where = ".".join(parts[:depth]) or type(target).__name__
                raise ValueError(f"unknown option {path!r}: {where} has no field {name!r}; valid: {sorted(fields)}")
            if depth == len(parts) - 1:
                hint = typing.get_type_hints(type(target))[name]
                if dataclasses.is_dataclass(hint):
                    raise ValueError(f"option {path!r} names a section; set one of its fields instead")
                setattr(target, name, _coerce(text.strip(), hint, path))
            else:
                target = getattr(target, name)
    validate(config)
    return config


def validate(config) -> None:
    head = getattr(config, "decode_head", None)
    if head is not None and head.select_method not in SELECT_METHODS:
        raise ValueError(
            f"unknown select_method {head.select_method!r}; valid: {', '.join(SELECT_METHODS)}"
        )
    test = getattr(config, "test", None)
    if test is not None and test.mode not in ("slide", "whole"):
        raise ValueError(f"unknown test.mode {test.mode!r}; valid: slide, whole")
    if test is not None and test.temporal_mean < 0:
        raise ValueError(f"test.temporal_mean must be >= 0 (frames on each side), got {test.temporal_mean}")
    flow = getattr(config, "flow", None)
    if isinstance(flow, FlowConfig):
        if flow.method not in FLOW_METHODS:
            raise ValueError(f"unknown flow.method {flow.method!r}; valid: {', '.join(FLOW_METHODS)}")
        if flow.camera_motion not in CAMERA_MOTION_MODELS:
            raise ValueError(f"unknown flow.camera_motion {flow.camera_motion!r}; "
                             f"valid: {', '.join(CAMERA_MOTION_MODELS)}")
        if not 0 < flow.scale <= 1:
            raise ValueError(f"flow.scale must be in (0, 1], got {flow.scale}")
