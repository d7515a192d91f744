"""The default model that ships in the package: strict loading, real masks on a real DAVIS sequence, and the
command a newcomer runs first (`hfan segment examples/blackswan.mp4` with no checkpoint)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers.shared import PROJECT_ROOT, shared_path
from hfan import get_preset, load_model
from hfan.cli import main
from hfan.evaluation.davis import jaccard
from hfan.io.images import read_mask
from hfan.io.video import open_frames
from hfan.presets import default_weights_path
from hfan.models.checkpoints import model_card, read_checkpoint_file
from hfan.segment import segment_video

SAMPLE_CLIP = PROJECT_ROOT / "examples" / "blackswan.mp4"


def test_packaged_weights_are_small_half_precision_and_load_strictly():
    path = default_weights_path()
    assert path.is_file(), f"{path} is missing: the default model must ship inside the package"
    assert path.stat().st_size <= 10_000_000
    data = read_checkpoint_file(path)  # weights_only=True
    assert {v.dtype for v in data["state_dict"].values() if v.is_floating_point()} == {torch.float16}
    model = load_model("default")
    assert model.config == get_preset("hfan-default")  # its settings travel with it
    assert model.config.flow.camera_motion == "affine" and model.config.decode_head.select_method == "fw"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    # fp16 values come back exactly in the fp32 model
    first = next(iter(data["state_dict"]))
    assert torch.equal(model.state_dict()[first], data["state_dict"][first].float())
    card = model_card(path)
    assert card["name"] == "hfan-default" and "validation" in card and card["iteration"] > 0
    with pytest.raises(ValueError, match="unknown model preset 'default'"):
        load_model(path, preset="default")  # "default" names the packaged weights (a checkpoint), not a preset


def test_default_model_segments_a_real_davis_sequence():
    """A regression guard, not the benchmark: J-Mean >= 0.5 on car-shadow with the segment defaults."""
    root = shared_path("data/davis16_mini")
    frames_dir = root / "JPEGImages" / "480p" / "car-shadow"
    masks = sorted((root / "Annotations" / "480p" / "car-shadow").glob("*.png"))
    results = list(segment_video(frames_dir, load_model("default"), batch_size=4))
    assert len(results) == len(masks) == 40
    # DAVIS-2016 protocol: the first and last frames are not scored
    scores = [jaccard(read_mask(path) > 0, result.mask) for path, result in zip(masks[1:-1], results[1:-1])]
    assert np.mean(scores) >= 0.5, f"J-Mean {np.mean(scores):.3f} on car-shadow"


def test_first_command_of_the_readme_segments_the_sample_clip(tmp_path, capsys):
    out = tmp_path / "blackswan"
    assert main(["segment", str(SAMPLE_CLIP), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model: hfan-default" in printed and "--checkpoint HFAN-s-converted.pth" in printed
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == 50
    swan = read_mask(masks[25]) > 0
    assert 0.05 < swan.mean() < 0.5  # the swan, not nothing and not everything
    truth = read_mask(shared_path("data/davis16_mini/Annotations/480p/blackswan/00025.png")) > 0
    assert jaccard(truth, swan) > 0.5
    assert sum(1 for _ in open_frames(out / "overlay.mp4")) == 50
