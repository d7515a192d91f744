"""Scale-out: `torchrun --nproc_per_node 2 -m hfan infer` shards videos over processes; the union of their
outputs is byte for byte what one process writes."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.shared import PROJECT_ROOT
from hfan import build_model, get_preset, save_checkpoint
from hfan.cli import main
from hfan.io.images import write_image
from hfan.datasets.layouts import FlatLayout

VIDEOS = {"bear": (3, 48, 80), "camel": (2, 40, 72), "dog": (4, 48, 80)}  # frames, height, width
SMALL = ["test.img_scale=256,128"]


def _prepared_dataset(root: Path) -> None:
    layout, rng = FlatLayout(root), np.random.default_rng(0)
    for video, (count, height, width) in VIDEOS.items():
        for index in range(count):
            write_image(layout.frame_path("val", video, index), rng.integers(0, 256, (height, width, 3), np.uint8))
            write_image(layout.flow_path("val", video, index), rng.integers(0, 256, (height, width, 3), np.uint8))


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


@pytest.mark.slow
def test_two_gloo_processes_write_what_one_process_writes(tmp_path):
    _prepared_dataset(tmp_path / "data")
    torch.manual_seed(0)
    config = get_preset("hfan-b0")
    checkpoint = save_checkpoint(tmp_path / "b0.pth", build_model(config), config)
    arguments = ["infer", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "data"), "--batch-size", "2",
                 "--save-probabilities", "--options", *SMALL]

    assert main(arguments + ["--out", str(tmp_path / "single")]) == 0
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "hfan", *arguments, "--out", str(tmp_path / "sharded")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    # Rank 0 takes bear and dog (7 frames), rank 1 camel (2 frames): both processes really ran.
    assert sorted(int(n) for n in re.findall(r"(\d+) frames written", result.stdout)) == [2, 7]
    single, sharded = _outputs(tmp_path / "single"), _outputs(tmp_path / "sharded")
    assert len(single) == sum(count for count, _, _ in VIDEOS.values()) == 9
    assert sharded == single
    assert _outputs(tmp_path / "sharded-prob") == _outputs(tmp_path / "single-prob")
