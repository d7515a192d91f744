"""One Predictor policy: `hfan segment`, `hfan infer` and `Predictor(model)` in Python pick the same device, window
batch and precision (hfan.inference.predictor.default_device / default_max_batch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hfan import Predictor, build_model, get_preset, load_model, save_checkpoint
from hfan.cli import main
from hfan.datasets.layouts import FlatLayout
from hfan.io.images import write_image
from hfan.evaluation.predict import InferReport
from hfan.inference.predictor import default_device, default_max_batch, load_predictor
from hfan.streams import Timings


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "b0.pth", build_model("hfan-b0"), get_preset("hfan-b0"))


@pytest.fixture(autouse=True)
def _untuned_malloc(monkeypatch):
    from hfan.inference import malloc

    monkeypatch.setattr(malloc, "tune_malloc", lambda: True)  # process-wide: not from a test


def _policy(predictor: Predictor) -> tuple:
    return (predictor.device, predictor.max_batch, predictor.precision, predictor.backend, predictor.static_batch,
            predictor.allocator_tuned)


def test_hfan_segment_builds_the_predictor_python_builds(checkpoint, monkeypatch, tmp_path):
    from hfan import segment

    built = []

    def capture(source, out, predictor, *args, **kwargs):
        built.append((source, out, predictor))
        return Timings()

    monkeypatch.setattr(segment, "segment_to_folder", capture)
    clip = tmp_path / "clip"
    for index in range(2):
        write_image(clip / f"{index}.jpg", np.full((32, 48, 3), 40 * index, np.uint8))
    assert main(["segment", str(clip), "--checkpoint", str(checkpoint)]) == 0
    [(source, out, predictor)] = built
    assert (source.path, Path(out)) == (clip, (tmp_path / "clip_hfan").resolve())
    in_python = Predictor(load_model(checkpoint))
    assert _policy(predictor) == _policy(in_python)
    assert predictor.config == in_python.config and predictor.model.config == in_python.model.config
    assert next(predictor.model.parameters()).device == predictor.device


def test_hfan_infer_builds_the_predictor_python_builds(checkpoint, monkeypatch, tmp_path):
    from hfan.evaluation import predict

    built = []

    def capture(predictor, data_root, split, out, batch_size, *args, **kwargs):
        built.append((predictor, batch_size))
        return InferReport(0, 0, 0.0, 0.0)

    monkeypatch.setattr(predict, "infer_dataset", capture)
    layout = FlatLayout(tmp_path / "data")  # one prepared frame: infer_dataset itself is replaced
    write_image(layout.frame_path("val", "clip", 0), np.zeros((8, 8, 3), np.uint8))
    write_image(layout.flow_path("val", "clip", 0), np.zeros((8, 8, 3), np.uint8))
    assert main(["infer", "--checkpoint", str(checkpoint), "--data", str(tmp_path / "data"), "--out",
                 str(tmp_path / "out"), "--batch-size", "2"]) == 0
    [(predictor, batch_size)] = built
    assert batch_size == 2
    assert _policy(predictor) == _policy(Predictor(load_model(checkpoint), frames_per_batch=2))


def test_load_predictor_and_predictor_share_the_defaults(checkpoint):
    device = default_device()
    for frames in (1, 2, 16):
        loaded = load_predictor(checkpoint, frames_per_batch=frames)
        assert _policy(loaded) == _policy(Predictor(load_model(checkpoint), frames_per_batch=frames))
        assert loaded.device == device and loaded.max_batch == default_max_batch(device, False, frames)
    if not torch.cuda.is_available():
        assert (loaded.device.type, loaded.max_batch, loaded.precision) == ("cpu", 8, "fp32")


def test_segment_video_in_python_runs_the_predictor_of_hfan_segment(checkpoint, monkeypatch, tmp_path):
    """`hfan.segment_video(path, model)`, the Python API's one call, and `hfan segment` take the same settings:
    device, window batch, precision, backend, allocator tuning, test config."""
    from hfan import segment

    made = []

    class Recording(Predictor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    clip = tmp_path / "clip"
    for index in range(2):
        write_image(clip / f"{index}.jpg", np.full((32, 48, 3), 40 * index, np.uint8))
    monkeypatch.setattr(segment, "Predictor", Recording)
    assert len(list(segment.segment_video(clip, load_model(checkpoint)))) == 2
    [in_python] = made
    monkeypatch.setattr(segment, "segment_to_folder",
                        lambda source, out, predictor, *args, **kwargs: made.append(predictor) or Timings())
    assert main(["segment", str(clip), "--checkpoint", str(checkpoint)]) == 0
    from_cli = made[-1]
    assert from_cli is not in_python
    assert _policy(from_cli) == _policy(in_python) and from_cli.allocator_tuned
    assert from_cli.config == in_python.config
