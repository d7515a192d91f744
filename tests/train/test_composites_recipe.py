"""`hfan train hfan-default-composites`: the recipe of the default model, through the real training loop, on a
few composites (Debian photo and clip-art packages; skipped without them, a failure under CI)."""
from __future__ import annotations

from pathlib import Path

import torch

from helpers.shared import skip_or_fail
from hfan.cli import main as hfan_main
from hfan.config import SHAPE_DIRS
from hfan.datasets.composites import DEBIAN_PACKAGES
from hfan.models.checkpoints import load_model, read_checkpoint_file
from hfan.presets import get_preset, get_train_preset
from hfan.train.loop import BEST_CHECKPOINT

PHOTOS = "/usr/share/backgrounds/gnome"


def _needs_assets():
    if not (Path(SHAPE_DIRS[0]).is_dir() and Path(PHOTOS).is_dir()):
        skip_or_fail(f"needs {SHAPE_DIRS[0]} and {PHOTOS}: apt-get install {' '.join(DEBIAN_PACKAGES)}")


def test_the_recipe_trains_the_default_model_with_its_flow_settings():
    config = get_train_preset("hfan-default-composites")
    assert config.data.source == "composites"
    assert config.model == get_preset("hfan-default")
    assert config.keep_best == "J-Mean" and config.data.val_root is None


def test_a_short_run_keeps_the_best_checkpoint_and_resumes(tmp_path, monkeypatch):
    _needs_assets()
    monkeypatch.setenv("HFAN_HOME", str(tmp_path / "home"))  # the asset cache of this test only
    work = tmp_path / "run"
    options = ["iterations=4", "checkpoint_interval=2", "eval_interval=2", "log_interval=1",
               "data.batch_per_gpu=2", "data.workers_per_gpu=0", "threads=1",
               "data.composites.max_shapes=20", f"data.composites.photo_dirs={PHOTOS}",
               "data.composites.val_videos=2", "data.composites.val_frames=3", "data.composites.val_size=64,96",
               "data.composites.size=64"]
    assert hfan_main(["train", "hfan-default-composites", "--work-dir", str(work), "--no-progress",
                      "--options", *options[:1], "iterations=2", *options[1:]]) == 0
    best = read_checkpoint_file(work / BEST_CHECKPOINT)
    assert best["iteration"] == 2 and best["selected_by"] == "J-Mean"
    assert set(best["validation"]) >= {"J-Mean", "F-Mean"}
    assert len(list((work / "composite_val" / "frame" / "val").glob("*.jpg"))) == 6  # 2 held-out clips x 3
    model = load_model(work / BEST_CHECKPOINT)
    assert model.config.flow.camera_motion == "affine"
    # the run continues from its latest checkpoint to iteration 4 with the same stream
    assert hfan_main(["train", "--resume", str(work), "--work-dir", str(work), "--no-progress",
                      "--options", "iterations=4"]) == 0
    assert read_checkpoint_file(work / "latest.pth")["iteration"] == 4
    kept = read_checkpoint_file(work / BEST_CHECKPOINT)
    assert kept["validation"]["J-Mean"] >= best["validation"]["J-Mean"]
    assert torch.is_tensor(next(iter(kept["state_dict"].values())))
