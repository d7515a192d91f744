"""Checkpoints: the official released files, SegFormer's ImageNet MiT files, and our own format.

Every load is strict (the original's mmcv loader is not: docs/design.md#quirk-non-strict-loading): any missing,
unexpected or wrongly shaped key is an error naming the keys. The only keys ever dropped are the dead `decode_head.conv_seg.*`
(docs/design.md#quirk-dead-conv_seg) and an ImageNet file's classifier `head.*`.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from hfan.files import atomic_path, check_output_file
from hfan.presets import DEFAULT_MODEL, MODEL_PRESETS, default_weights_path, get_preset
from hfan.config import ModelConfig, SELECT_METHODS, apply_overrides
from hfan.models.mit import MIT_SETTINGS
from hfan.models.segmentor import HFANSegmentor, build_model

OFFICIAL_BACKBONE_PREFIX = "backbone.backbone."
OUR_BACKBONE_PREFIX = "backbone."
DEAD_KEYS_PREFIX = "decode_head.conv_seg."
FORMAT_NAME = "hfan-checkpoint"
FORMAT_VERSION = 1

# The ablation files share the plain decoder's keys; their names say which fusion they were trained with.
_FILENAME_METHODS = {"im": "im", "fw": "fw", "baseline": "base", "base": "base"}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used as asked; the message names the file and the fix."""


def read_checkpoint_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch's remarks on foreign pickles: the error below says it all
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated, corrupt or foreign files
        # torch's own message advises turning weights_only off: never pass that on (it would run the file's code)
        detail = "" if "weights_only" in str(error) else f" ({type(error).__name__}: {str(error).splitlines()[0]})"
        raise CheckpointError(f"{path} is not a checkpoint that hfan can read{detail}: the file is truncated, "
                              "corrupt or not a PyTorch checkpoint; download it again") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(data).__name__}, not a state dict")
    return data


def extract_state_dict(data: dict, path: str | os.PathLike = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The tensors of an mmcv file ({'meta', 'state_dict'}), of ours, or of a bare state dict; `module.` stripped."""
    state = data.get("state_dict", data)
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} holds no state dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def official_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (mmseg EncoderDecoder) key names -> this package's; conv_seg dropped. Ours pass unchanged."""
    converted = {}
    for key, value in state.items():
        if key.startswith(DEAD_KEYS_PREFIX):
            continue
        if key.startswith(OFFICIAL_BACKBONE_PREFIX):
            key = OUR_BACKBONE_PREFIX + key[len(OFFICIAL_BACKBONE_PREFIX):]
        converted[key] = value
    return converted


def ours_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse mapping (without the dead conv_seg), for exporting to the original code."""
    return {(OFFICIAL_BACKBONE_PREFIX + k[len(OUR_BACKBONE_PREFIX):] if k.startswith(OUR_BACKBONE_PREFIX) else k): v
            for k, v in state.items()}


def _detect_backbone(state: dict[str, torch.Tensor]) -> str:
    first = state.get("backbone.patch_embed1.proj.weight")
    if first is None:
        raise CheckpointError("no MiT backbone keys (backbone.backbone.patch_embed1.*) found")
    dims = tuple(state[f"backbone.norm{s}.weight"].shape[0] for s in range(1, 5))
    depths = tuple(len({m.group(1) for k in state if (m := re.match(rf"backbone\.block{s}\.(\d+)\.", k))})
                   for s in range(1, 5))
    for name, settings in MIT_SETTINGS.items():
        if settings.embed_dims == dims and settings.depths == depths:
            return name
    raise CheckpointError(f"backbone with widths {dims} and depths {depths} is none of {', '.join(MIT_SETTINGS)}")


def _detect_select_method(state: dict[str, torch.Tensor], path: str | os.PathLike) -> str | None:
    for method in ("hfan", "fam", "fat"):
        if any(k.startswith(f"decode_head.{method}1.") for k in state):
            return method
    match = re.match(r"^(im|fw|baseline|base)[-_.]", Path(path).name)
    return _FILENAME_METHODS[match.group(1)] if match else None


def detect_config(state: dict[str, torch.Tensor], path: str | os.PathLike = "<checkpoint>") -> tuple[ModelConfig, bool]:
    """The model configuration a state dict (our key names) was made for.

    Returns (config, method_known): im/fw/base files have identical keys, so their select_method is only
    known from the official file names (im-, fw-, baseline-converted.pth).
    """
    backbone = _detect_backbone(state)
    if "decode_head.linear_c4.proj.weight" not in state:
        raise CheckpointError(f"checkpoint {path} has no decode_head.linear_c4.proj.weight: not an HFAN model")
    embed_dim = state["decode_head.linear_c4.proj.weight"].shape[0]
    num_classes = state["decode_head.linear_pred.weight"].shape[0]
    method = _detect_select_method(state, path)
    config = next((get_preset(name) for name, record in MODEL_PRESETS.items() if not record.packaged
                   and record.config.backbone.name == backbone and record.config.decode_head.embed_dim == embed_dim),
                  None)
    if config is None:
        config = ModelConfig()
        config.backbone.name, config.decode_head.embed_dim = backbone, embed_dim
    config.decode_head.num_classes = num_classes
    config.decode_head.select_method = method or "base"
    return config, method is not None


def load_state_dict_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        def listing(title, keys):
            return f"\n  {title} ({len(keys)}): " + ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else "") if keys else ""
        raise CheckpointError(f"checkpoint {source} does not match the model" + listing("missing keys", missing)
                              + listing("unexpected keys", unexpected) + listing("wrong shapes", wrong)
                              + "\n  Check --model / --options (backbone, decode_head.select_method, embed_dim).")
    model.load_state_dict(state, strict=True)


PLAIN_DECODER_METHODS = ("im", "fw", "base")  # no fusion modules: identical keys


def _contradictions(asked: ModelConfig, found: ModelConfig, method_known: bool) -> list[str]:
    pairs = [("backbone.name", asked.backbone.name, found.backbone.name),
             ("decode_head.embed_dim", asked.decode_head.embed_dim, found.decode_head.embed_dim),
             ("decode_head.num_classes", asked.decode_head.num_classes, found.decode_head.num_classes)]
    asked_method = asked.decode_head.select_method
    if method_known:
        pairs.append(("decode_head.select_method", asked_method, found.decode_head.select_method))
    elif asked_method not in PLAIN_DECODER_METHODS:
        pairs.append(("decode_head.select_method", asked_method, "one of im/fw/base (plain decoder)"))
    return [f"{field}: asked {a!r}, checkpoint has {b!r}" for field, a, b in pairs if a != b]


def model_card(path: str | os.PathLike) -> dict:
    """What a checkpoint of ours says about itself (name, training data, scores); {} when it says nothing."""
    card = read_checkpoint_file(path).get("model_card")
    return dict(card) if isinstance(card, dict) else {}


def default_model_summary() -> str:
    """One line on the packaged default model, for `hfan segment` without --checkpoint."""
    path = default_weights_path()
    card = model_card(path) if path.is_file() else {}
    return (f"model: {card.get('name', 'hfan-default')}, the default model shipped with hfan "
            f"({card.get('summary', 'MiT-b0, flow only, trained on synthetic composites')}); "
            "the paper's accuracy needs the official weights: --checkpoint HFAN-s-converted.pth")


def load_model(checkpoint: str | os.PathLike, preset: str | None = None, options: list[str] | tuple[str, ...] = (),
               device: str | torch.device = "cpu") -> HFANSegmentor:
    """A model with the weights of `checkpoint`, loaded strictly, in eval mode on `device`.

    `checkpoint` is a file (an official *-converted.pth, or one of ours) or `"default"`, the trained model that
    ships with the package. Our files carry their configuration; for official files it is detected from the
    keys. `preset` (e.g. hfan-small) and `options` (dotted overrides) say what is expected: a file that
    contradicts them is refused. A preset name given as the checkpoint is an error: `build_model(preset)` gives
    that model with random weights.
    """
    if str(checkpoint) == DEFAULT_MODEL:
        checkpoint = default_weights_path()
        if not checkpoint.is_file():
            raise FileNotFoundError(f"the default model's weights are missing from this installation "
                                    f"({checkpoint}); reinstall hfan, or pass a checkpoint")
    elif str(checkpoint) in MODEL_PRESETS and not Path(checkpoint).is_file():
        raise ValueError(f"{str(checkpoint)!r} is a model preset, not a checkpoint: hfan.build_model("
                         f"{str(checkpoint)!r}) gives it with random weights; load_model takes a checkpoint file "
                         f"(or {DEFAULT_MODEL!r}, the packaged model)")
    if preset is not None and preset not in MODEL_PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; valid presets: {', '.join(MODEL_PRESETS)}")

    data = read_checkpoint_file(checkpoint)
    state = official_to_ours(extract_state_dict(data, checkpoint))
    if data.get("format") == FORMAT_NAME:
        found, method_known = ModelConfig.from_dict(data["config"]), True
    else:
        found, method_known = detect_config(state, checkpoint)
    asked = apply_overrides(get_preset(preset), options) if preset else None
    if asked is None and options:
        asked = apply_overrides(ModelConfig.from_dict(found.to_dict()), options)
    if asked is not None:
        problems = _contradictions(asked, found, method_known)
        if problems:
            raise CheckpointError(f"checkpoint {checkpoint} contradicts what was asked:\n  " + "\n  ".join(problems))
        config = asked
    else:
        if not method_known:
            raise CheckpointError(
                f"checkpoint {checkpoint} has the plain decoder of the im/fw/base ablations and its name does not "
                "say which: pass --options decode_head.select_method=im|fw|base")
        config = found
    model = build_model(config)
    load_state_dict_strict(model, state, str(checkpoint))
    return model.eval().to(device)


def load_imagenet_backbone(model: HFANSegmentor, path: str | os.PathLike) -> None:
    """SegFormer's ImageNet `mit_bX.pth` into the backbone (for stage-1 training); its `head.*` classifier is dropped."""
    data = read_checkpoint_file(path)
    state = extract_state_dict(data, path)
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    load_state_dict_strict(model.backbone, state, str(path))


def save_checkpoint(path: str | os.PathLike, model: nn.Module, config: ModelConfig, **extra) -> Path:
    """Our format: the configuration inside, so `load_model(path)` needs nothing else. Written atomically."""
    path = Path(path)
    module = model.module if hasattr(model, "module") else model
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": config.to_dict(),
               "state_dict": module.state_dict(), **extra}
    with atomic_path(path) as temporary:
        _save(payload, temporary)
    return path


def _save(payload: dict, path: Path) -> None:
    # Through a Python file object, so that a full disk is the OSError (ENOSPC) that atomic_path turns into one
    # line: torch reports it as an opaque RuntimeError ("unexpected pos ..."), raised while closing the archive
    # after the OSError of the write, which it keeps only as the context.
    with open(path, "wb") as handle:
        try:
            torch.save(payload, handle)
        except RuntimeError as error:
            if isinstance(error.__context__, OSError):
                raise error.__context__ from None
            raise


def export_weights(source: str | os.PathLike, out: str | os.PathLike, half: bool = True,
                   card: dict | None = None, options: list[str] | tuple[str, ...] = ()) -> Path:
    """A checkpoint of ours reduced to what inference needs: config, weights (fp16 with `half`: the fp32 model
    gets them back on loading, exactly these values), and a model card (`card`, plus the iteration and
    validation scores the source records). Optimiser and RNG states are dropped. `options` are dotted overrides
    of the recorded config's test or flow settings (e.g. `test.temporal_mean=3`); settings that change the
    weights' shapes fail the strict load. Written atomically."""
    check_output_file(out)
    data = read_checkpoint_file(source)
    if data.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{source} is not a checkpoint of ours (hfan train writes them): nothing to export")
    state = extract_state_dict(data, source)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    model_card_data = {key: data[key] for key in ("iteration", "validation", "selected_by") if key in data}
    model_card_data.update(card or {})
    config = apply_overrides(ModelConfig.from_dict(data["config"]), options).to_dict()
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": config, "state_dict": state,
               "model_card": model_card_data}
    out = Path(out)
    with atomic_path(out) as temporary:
        _save(payload, temporary)
        load_model(temporary)  # the file loads strictly, or it is not written
    return out


__all__ = ["CheckpointError", "SELECT_METHODS", "detect_config",
           "export_weights", "extract_state_dict", "load_imagenet_backbone", "load_model", "load_state_dict_strict",
           "model_card", "official_to_ours", "ours_to_official", "read_checkpoint_file", "save_checkpoint"]
