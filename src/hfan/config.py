"""Typed configuration: every config dataclass of the project, and dotted command-line overrides.

Model (backbone, decode head, test path, flow), training (data, augmentation, composites, optimiser, schedule,
run). Every default that reproduces the paper lives here, with the section of docs/design.md it comes from; the
presets named after the paper's models are in hfan.presets. This module imports neither torch nor OpenCV.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field

# docs/design.md#select-methods: the per-level fusion, in the order of the paper's ablation table.
SELECT_METHODS = ("im", "fw", "base", "fam", "fat", "hfan")

# ImageNet statistics, RGB order, for the frame and the flow image alike (docs/design.md#normalisation,
# docs/design.md#quirk-imagenet-statistics-for-flow).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)

PRECISIONS = ("fp32", "fp16", "bf16")  # of a forward (hfan.preprocess.autocast_context) and of training
# The DAVIS summary columns of the official tools (hfan.evaluation.davis); training keeps the best by one of them.
DAVIS_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def _one_of(value: str, valid: tuple[str, ...], name: str) -> None:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


# ------------------------------------------------------------------------------------------------ model
@dataclass
class BackboneConfig:
    name: str = "mit_b1"  # docs/design.md#mit-variants; any name of hfan.models.mit.MIT_SETTINGS
    drop_path_rate: float = 0.1  # docs/design.md#mit-variants: hard-coded in the mit_b* classes
    img_size: int | None = None  # only for timm backbones that fix their input size (e.g. Swin)

    def validate(self) -> None:
        pass  # the name is checked where the backbone is built (MiT settings or timm's registry)


@dataclass
class HeadConfig:
    select_method: str = "hfan"  # docs/design.md#select-methods
    embed_dim: int = 256  # docs/design.md#decode-head: 256 small, 768 medium/large
    num_classes: int = 2
    dropout: float = 0.1  # docs/design.md#decode-head: Dropout2d before linear_pred

    def validate(self) -> None:
        if self.select_method not in SELECT_METHODS:
            raise ValueError(f"unknown select_method {self.select_method!r}; valid: {', '.join(SELECT_METHODS)}")


@dataclass
class InferenceConfig:
    """The official test path of the refine configs (docs/design.md#test-path)."""

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

    def validate(self) -> None:
        if self.mode not in ("slide", "whole"):
            raise ValueError(f"unknown test.mode {self.mode!r}; valid: slide, whole")
        if self.temporal_mean < 0:
            raise ValueError(f"test.temporal_mean must be >= 0 (frames on each side), got {self.temporal_mean}")


AUG_TEST_RATIOS = (0.75, 1.0, 1.75)  # docs/design.md#flip-and-multi-scale: hard-coded in tools/test.py

FLOW_METHODS = ("dis", "farneback", "raft_small", "raft_large")
CAMERA_MOTION_MODELS = ("none", "affine", "homography")  # hfan.flow.camera
DIS_PRESET_NAMES = ("ultrafast", "fast", "medium")  # OpenCV's DIS presets (hfan.flow.estimators.DIS_PRESETS)


@dataclass
class FlowConfig:
    """How the flow a model expects is made at test time; `hfan segment` and `hfan prepare` follow it.

    The official checkpoints were trained on raw RAFT flow (docs/design.md#flow-images): camera_motion `none`. Our
    default model was trained on DIS flow with the camera motion removed (hfan.flow.camera), which it needs at test
    time too.
    """

    method: str = "dis"  # the estimator `hfan segment` uses when --flow is not given
    dis_preset: str = "medium"
    camera_motion: str = "none"  # none | affine | homography: fitted to the flow and subtracted before encoding
    scale: float = 1.0  # frames are resized by this factor before flow estimation (speed); 1 = full resolution
    # Where `hfan segment` (segment_video) fits the camera and draws the colours: "frame" (the flow's own size) or
    # "model" (the field area-averaged to the keep-ratio size the test resizes the frame to, test.img_scale:
    # cheaper, and J level on davis16_mini, docs/default_model.md). `hfan prepare` always encodes at "frame".
    encode_at: str = "frame"

    def validate(self) -> None:
        _one_of(self.method, FLOW_METHODS, "flow.method")
        _one_of(self.camera_motion, CAMERA_MOTION_MODELS, "flow.camera_motion")
        _one_of(self.dis_preset, DIS_PRESET_NAMES, "flow.dis_preset")
        _one_of(self.encode_at, ("frame", "model"), "flow.encode_at")
        if not 0 < self.scale <= 1:
            raise ValueError(f"flow.scale must be in (0, 1], got {self.scale}")


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

    def validate(self) -> None:
        for section in (self.backbone, self.decode_head, self.test, self.flow):
            section.validate()


# --------------------------------------------------------------------------------------------- training
@dataclass
class AugmentConfig:
    """The `train_pipeline` of local_configs/hfan/*.py (identical in both stages)."""

    img_scale: tuple[int, int] = (2048, 512)  # keep-ratio box (long, short), scaled by the ratio
    ratio_range: tuple[float, float] = (0.5, 2.0)
    crop_size: tuple[int, int] = (512, 512)  # (h, w)
    cat_max_ratio: float = 0.75
    ignore_index: int = 255
    flip_prob: float = 0.5
    photometric: bool = True
    brightness_delta: float = 32.0
    contrast_range: tuple[float, float] = (0.5, 1.5)
    saturation_range: tuple[float, float] = (0.5, 1.5)
    hue_delta: int = 18
    seg_pad_val: int = 0  # docs/design.md#quirk-mask-padding: background, not ignore

    def validate(self) -> None:
        pass


# Where Debian's wallpaper and clip-art packages put their files (hfan.datasets.composites).
PHOTO_DIRS = ("/usr/share/backgrounds", "/usr/share/wallpapers")
SHAPE_DIRS = ("/usr/share/openclipart/png",)


@dataclass
class CompositeConfig:
    """What hfan.datasets.composites draws; the recipe of the shipped model sets its own (hfan.presets)."""

    size: int = 128  # training samples are size x size
    photo_dirs: tuple[str, ...] = PHOTO_DIRS
    shape_dirs: tuple[str, ...] = SHAPE_DIRS
    max_shapes: int = 2000  # shapes loaded (a random, seeded subset of the usable ones)
    max_speed: float = 8.0  # px per frame at `size`, for the camera and the objects
    track_probability: float = 0.5  # the camera follows the primary object
    # ... only when the camera moves at least this fast (px per frame at `size`); a slower camera leaves the object
    # moving on its own. 0: always (a tracked object under a still camera does not move at all: an impossible label)
    track_min_camera_speed: float = 0.0
    secondary_probability: float = 0.25  # a smaller object that moves on its own (labelled background)
    # Objects (the primary and the others alike) filled with a photo texture inside their outline, the rest with
    # their own clip-art colours: what the frame branch (select_method other than fw) sees of an object.
    texture_probability: float = 0.5
    # What the affine camera removal leaves behind on real video (0 = off; each draws from the clip's generator
    # only when on, so the clips of a recipe without them stay bit for bit the same):
    perspective: float = 0.0  # std of the camera's projective terms: relative speed change across the frame
    parallax_probability: float = 0.0  # a near layer (a fence or 1-2 shapes) moving 1.3-2.5x the camera
    ripple_probability: float = 0.0  # a non-rigid background below a random horizon
    ripple_amplitude: float = 1.5  # largest displacement of the non-rigid background, px at `size`
    # A primary object that is not rigid (an animal's legs, a walker, a flag): a smooth displacement field over the
    # shape that swings back and forth over time, so its flow is not one motion and its outline changes.
    deform_probability: float = 0.0
    deform_amplitude: float = 0.12  # largest displacement, as a fraction of the shape's longest side
    # What moves with the primary object and is not it (labelled background): its cast shadow (on the ground or a
    # wall) and, in the clips without one, its reflection (mirrored below it, as on water).
    shadow_probability: float = 0.0
    reflection_probability: float = 0.0
    # Clips are rendered and their flow computed at render_scale times their size, then frames, flow images and
    # masks are resized down to it (cv2 bilinear, as the test resizes): `hfan segment` computes the flow at the
    # video's resolution, several times the model's input. 1: rendered at the size itself.
    render_scale: float = 1.0
    samples_per_epoch: int = 100_000  # the stream's nominal length; every (epoch, index) is a new clip
    val_videos: int = 24  # held-out validation clips (held-out photos and shapes)
    val_frames: int = 6
    val_size: tuple[int, int] = (144, 256)  # (h, w) of the validation clips, a video's aspect ratio

    def validate(self) -> None:
        for name in ("secondary_probability", "texture_probability", "track_probability", "parallax_probability", "ripple_probability",
                     "deform_probability", "shadow_probability", "reflection_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"data.composites.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.deform_amplitude <= 0.5:
            raise ValueError(f"data.composites.deform_amplitude must be in [0, 0.5], got {self.deform_amplitude}")
        if not 1 <= self.render_scale <= 8:
            raise ValueError(f"data.composites.render_scale must be in [1, 8], got {self.render_scale}")


LR_POLICIES = ("poly", "fixed")
DATA_SOURCES = ("flat", "composites")
WARMUPS = ("linear", "none")


@dataclass
class DataConfig:
    # flat: a prepared dataset (root, split); composites: clips drawn on the fly from real photos and shapes
    # (hfan.data.composites), validated on held-out composite videos unless val_root is given.
    source: str = "flat"
    root: str = "data/YouTube2SEG"  # flat layout, docs/design.md#dataset-layout
    split: str = "train"
    repeat: int = 1  # stage 2: RepeatDataset times=15
    val_root: str | None = "data/DAVIS2SEG"  # None: no validation during training
    val_split: str = "val"
    batch_per_gpu: int = 16  # samples_per_gpu
    workers_per_gpu: int = 16
    pin_memory: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    composites: CompositeConfig = field(default_factory=CompositeConfig)

@dataclass
class ParamRule:
    lr_mult: float = 1.0
    decay_mult: float = 1.0

@dataclass
class ParamwiseRules:
    """mmcv custom_keys: a parameter whose full name contains a key takes that key's multipliers
    (longest key first, then alphabetical; see hfan.train.optim). Field names are the keys."""

    pos_block: ParamRule = field(default_factory=lambda: ParamRule(decay_mult=0.0))  # no such MiT params
    head: ParamRule = field(default_factory=lambda: ParamRule(lr_mult=10.0))
    norm: ParamRule = field(default_factory=lambda: ParamRule(decay_mult=0.0))

    def as_dict(self) -> dict[str, ParamRule]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

@dataclass
class OptimizerConfig:
    """AdamW (the only optimiser of the original)."""

    lr: float = 6e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    paramwise: ParamwiseRules = field(default_factory=ParamwiseRules)

@dataclass
class ScheduleConfig:
    """mmcv LrUpdaterHook by iteration: `poly` or `fixed`, with an optional linear warm-up."""

    policy: str = "poly"
    power: float = 1.0
    min_lr: float = 0.0
    warmup: str = "linear"
    warmup_iters: int = 3000
    warmup_ratio: float = 1e-6

@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)  # a preset's config (hfan.presets), overridable
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    iterations: int = 160_000
    grad_accum_steps: int = 1  # e.g. 1 GPU x 16 x 2 steps stands in for the paper's 2 GPUs x 16
    precision: str = "fp32"  # the original trains in fp32
    deterministic: bool = True  # the original's --deterministic
    seed: int = 1208
    checkpoint_interval: int = 16_000
    eval_interval: int = 16_000
    log_interval: int = 50
    tensorboard: bool = True  # besides the CSV logs, when tensorboard is installed
    pretrained: str | None = None  # stage 1: MiT ImageNet weights for the backbone
    load_from: str | None = None  # stage 2: weights of the stage-1 checkpoint; counters restart
    resume: str | None = None  # a checkpoint of this run: continue exactly
    keep_best: str | None = None  # a validation column (e.g. J-Mean): its best checkpoint is kept as best.pth
    threads: int | None = None  # torch threads of the training process (None: torch's default)
    # An exponential moving average of the weights, updated after every step (None: off). Validated next to the
    # trained weights; with keep_best, its best is kept as best_ema.pth. It does not change the training itself.
    ema_decay: float | None = None
    # A soft Jaccard (IoU) loss of the foreground added to the cross-entropy with this weight (0: the original's
    # cross-entropy only; hfan.train.loop.segmentation_loss).
    jaccard_loss_weight: float = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        config = _from_dict(cls, data)
        config.validate()
        return config

    def validate(self) -> None:
        self.model.validate()
        self.data.composites.validate()
        _one_of(self.precision, PRECISIONS, "precision")
        _one_of(self.data.source, DATA_SOURCES, "data.source")
        if self.keep_best is not None:
            _one_of(self.keep_best, DAVIS_COLUMNS, "keep_best")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay}")
        if self.jaccard_loss_weight < 0:
            raise ValueError(f"jaccard_loss_weight must be >= 0, got {self.jaccard_loss_weight}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        _one_of(self.schedule.policy, LR_POLICIES, "schedule.policy")
        _one_of(self.schedule.warmup, WARMUPS, "schedule.warmup")
        positive = {"iterations": self.iterations, "grad_accum_steps": self.grad_accum_steps,
                    "checkpoint_interval": self.checkpoint_interval, "eval_interval": self.eval_interval,
                    "log_interval": self.log_interval, "data.repeat": self.data.repeat,
                    "data.batch_per_gpu": self.data.batch_per_gpu}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.data.workers_per_gpu < 0:
            raise ValueError(f"data.workers_per_gpu must be >= 0, got {self.data.workers_per_gpu}")
        if self.schedule.warmup != "none" and not 0 < self.schedule.warmup_ratio <= 1:
            raise ValueError(f"schedule.warmup_ratio must be in (0, 1], got {self.schedule.warmup_ratio}")
        if self.load_from and self.resume:
            raise ValueError("give either load_from (new run from weights) or resume (continue a run), not both")


# -------------------------------------------------------------------------------------------- overrides
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


def check_model_options(options: typing.Iterable[str]) -> None:
    """Raise the error `apply_overrides` would for these model options (an unknown field, a bad value), on a plain
    ModelConfig: what the commands check before a model loads. A value that clashes only with a checkpoint's
    own settings is found when it loads."""
    apply_overrides(ModelConfig(), options)


def apply_overrides(config, overrides: typing.Iterable[str]):
    """Apply `a.b.c=value` strings to a dataclass config (a ModelConfig or a TrainConfig) in place, validate it
    and return it.

    On a ModelConfig the original's spelling `model.decode_head.select_method=im` is accepted (the `model.`
    prefix is dropped); on a TrainConfig, `model.<field>` is its model's field. An unknown field is an error that
    lists the valid ones.
    """
    strip_prefixes = ("model.",) if isinstance(config, ModelConfig) else ()
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
    config.validate()
    return config


def validate(config) -> None:
    """Check a config's values (each class's `validate`); an error names the field and the valid values."""
    config.validate()
