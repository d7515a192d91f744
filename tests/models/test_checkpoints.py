"""Checkpoint loading: strict, with one clear error for every kind of bad file."""
from __future__ import annotations

import pytest
import torch

from hfan.config import apply_overrides
from hfan.presets import get_preset
from hfan.models import build_model
from hfan.models.segmentor import HFANSegmentor
from hfan.models.checkpoints import (CheckpointError, load_imagenet_backbone, load_model, ours_to_official,
                                     save_checkpoint)


@pytest.fixture(scope="module")
def b0_model():
    torch.manual_seed(3)
    return build_model(get_preset("hfan-b0")).eval()


def _official_file(model, path, transform=None):
    state = ours_to_official(model.state_dict())
    state["decode_head.conv_seg.weight"] = torch.zeros(2, 128, 1, 1)  # dead key present in official files
    state["decode_head.conv_seg.bias"] = torch.zeros(2)
    if transform:
        transform(state)
    torch.save({"meta": {"CLASSES": ("background", "foreground")}, "state_dict": state}, path)
    return path


def test_official_layout_with_module_prefix_and_bare_dict(b0_model, tmp_path):
    state = {"module." + k: v for k, v in ours_to_official(b0_model.state_dict()).items()}
    torch.save(state, tmp_path / "bare.pth")
    loaded = load_model(tmp_path / "bare.pth")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), b0_model.state_dict().values()))


@pytest.mark.parametrize("transform, message", [
    (lambda s: s.pop("decode_head.linear_pred.bias"), "missing keys \\(1\\): decode_head.linear_pred.bias"),
    (lambda s: s.__setitem__("decode_head.extra.weight", torch.zeros(1)), "unexpected keys \\(1\\): decode_head.extra"),
    (lambda s: s.__setitem__("decode_head.linear_pred.bias", torch.zeros(3)), "wrong shapes \\(1\\): decode_head.linear_pred.bias"),
])
def test_mismatching_keys_are_named(b0_model, tmp_path, transform, message):
    path = _official_file(b0_model, tmp_path / "HFAN-b0.pth", transform)
    with pytest.raises(CheckpointError, match=message):
        load_model(path, preset="hfan-b0")


def test_not_a_checkpoint_truncated_and_missing(b0_model, tmp_path):
    (tmp_path / "notes.pth").write_text("this is not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pth.*truncated, corrupt or not a PyTorch checkpoint"):
        load_model(tmp_path / "notes.pth")
    good = _official_file(b0_model, tmp_path / "full.pth")
    data = good.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pth"):
        load_model(tmp_path / "cut.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="list.pth holds a list"):
        load_model(tmp_path / "list.pth")
    torch.save({"state_dict": {"a": 1}}, tmp_path / "nostate.pth")
    with pytest.raises(CheckpointError, match="no state dict of tensors"):
        load_model(tmp_path / "nostate.pth")
    with pytest.raises(FileNotFoundError, match="absent.pth does not exist"):
        load_model(tmp_path / "absent.pth")


def test_contradiction_with_what_was_asked_is_refused(b0_model, tmp_path):
    path = _official_file(b0_model, tmp_path / "HFAN-b0.pth")
    with pytest.raises(CheckpointError, match="backbone.name: asked 'mit_b1', checkpoint has 'mit_b0'"):
        load_model(path, preset="hfan-small")
    with pytest.raises(CheckpointError, match="select_method: asked 'fat'"):
        load_model(path, preset="hfan-b0", options=["decode_head.select_method=fat"])


def test_plain_decoder_needs_its_method(tmp_path):
    model = build_model(apply_overrides(get_preset("hfan-b0"), ["decode_head.select_method=fw"]))
    path = _official_file(model, tmp_path / "my-ablation.pth")
    with pytest.raises(CheckpointError, match="decode_head.select_method=im\\|fw\\|base"):
        load_model(path)
    assert load_model(path, options=["decode_head.select_method=fw"]).config.decode_head.select_method == "fw"
    with pytest.raises(CheckpointError, match="one of im/fw/base"):
        load_model(path, preset="hfan-b0")  # preset default is hfan


def test_own_format_round_trip_needs_no_other_argument(tmp_path):
    config = apply_overrides(get_preset("hfan-b0"), ["decode_head.select_method=fat", "test.stride=300"])
    model = build_model(config)
    path = save_checkpoint(tmp_path / "sub" / "mine.pth", model, config, iteration=7)
    assert not [p for p in path.parent.iterdir() if p.name != "mine.pth"], "no temporary file left behind"
    loaded = load_model(path)
    assert loaded.config == config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_imagenet_backbone_file(b0_model, tmp_path):
    state = dict(b0_model.backbone.state_dict())
    state["head.weight"], state["head.bias"] = torch.zeros(1000, 256), torch.zeros(1000)
    torch.save(state, tmp_path / "mit_b0.pth")
    fresh = build_model(get_preset("hfan-b0"))
    load_imagenet_backbone(fresh, tmp_path / "mit_b0.pth")
    assert torch.equal(fresh.backbone.norm4.weight, b0_model.backbone.norm4.weight)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        load_imagenet_backbone(build_model(get_preset("hfan-small")), tmp_path / "mit_b0.pth")


def test_export_weights_halves_the_file_keeps_the_config_and_records_a_card(tmp_path):
    from hfan.cli import main
    from hfan.models.checkpoints import export_weights, model_card

    torch.manual_seed(0)
    config = get_preset("hfan-default")
    model = build_model(config)
    source = save_checkpoint(tmp_path / "best.pth", model, config, iteration=7, validation={"J-Mean": 0.5},
                             optimizer={"state": {}})
    out = export_weights(source, tmp_path / "shipped.pth", card={"name": "mine"})
    data = torch.load(out, weights_only=True)
    assert set(data) == {"format", "version", "config", "state_dict", "model_card"}  # no optimiser state
    assert {v.dtype for v in data["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    assert model_card(out) == {"iteration": 7, "validation": {"J-Mean": 0.5}, "name": "mine"}
    loaded = load_model(out)
    assert loaded.config == config
    for key, value in model.state_dict().items():  # the fp16 rounding of every weight, nothing else
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(loaded.state_dict()[key], expected), key
    assert main(["export", "weights", str(tmp_path / "absent.pth"), "--out", str(tmp_path / "x.pth")]) == 2
    assert not (tmp_path / "x.pth").exists()


def test_a_preset_name_is_not_a_checkpoint_and_build_model_gives_random_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no file named hfan-small here
    with pytest.raises(ValueError, match="build_model"):
        load_model("hfan-small")
    model = build_model("hfan-b0", ["decode_head.select_method=fw"])
    assert isinstance(model, HFANSegmentor)
    assert model.config == apply_overrides(get_preset("hfan-b0"), ["decode_head.select_method=fw"])
    assert model.config.decode_head.select_method == "fw" and model.config.backbone.name == "mit_b0"
    assert get_preset("hfan-b0").decode_head.select_method == "hfan", "the preset itself is unchanged"
