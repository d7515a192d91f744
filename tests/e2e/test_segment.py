"""From a video to masks: `hfan segment`, `hfan infer`, the Python API, resumption and bad input."""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers.shared import PROJECT_ROOT, shared_path
from hfan import Predictor, build_model, get_preset, load_model, save_checkpoint
from hfan.cli import main
from hfan.config import apply_overrides
from hfan.files import is_temp_path
from hfan.io.images import read_image, write_image, write_mask
from hfan.io.video import open_frames
from hfan.segment import segment_to_folder, segment_video
from hfan.streams import prefetched

# A small test scale keeps CPU tests quick; the code path is the official one.
SMALL = ["test.img_scale=256,128"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    config = get_preset("hfan-b0")
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "hfan-b0-random.pth", build_model(config), config)


def _frames(count, height, width, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height + 8 * count, width + 8 * count, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[4 * i:4 * i + height, 3 * i:3 * i + width]) for i in range(count)]


def test_segment_a_real_video(checkpoint, tmp_path, capsys):
    video = shared_path("data/videos/tree.avi")
    out = tmp_path / "tree"
    assert main(["segment", str(video), "--out", str(out), "--checkpoint", str(checkpoint), "--fast",
                 "--save-probabilities", "--options", *SMALL]) == 0
    count = sum(1 for _ in open_frames(video))
    masks = sorted((out / "masks").glob("*.png"))
    assert len(masks) == count == 68  # the container claims 444 frames; 68 decode
    assert {cv2.imread(str(m), cv2.IMREAD_UNCHANGED).shape for m in masks} == {(240, 320)}
    assert set(np.unique(cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED))) <= {0, 255}
    assert len(list((out / "probabilities").glob("*.png"))) == count
    overlay = open_frames(out / "overlay.mp4")
    assert sum(1 for _ in overlay) == count and overlay.size == (320, 240)
    assert overlay.fps == pytest.approx(open_frames(video).fps, rel=1e-3)
    assert "68 frames" in capsys.readouterr().out


def test_python_api_is_lazy_and_matches_predict(checkpoint):
    model = load_model(checkpoint, options=SMALL)
    frames = _frames(3, 61, 87)  # odd sizes
    results = segment_video(frames, model, flow="dis", batch_size=2)
    first = next(results)
    assert first.index == 0 and first.mask.shape == (61, 87) and first.probability.dtype == np.float32
    rest = list(results)
    assert [r.index for r in rest] == [1, 2]
    direct = Predictor(model).predict([frames[2]], [rest[-1].flow_image])[0]
    assert np.array_equal(direct.mask, rest[-1].mask)


def test_prefetching_changes_nothing_in_the_results(checkpoint):
    model = load_model(checkpoint, options=SMALL)
    frames = _frames(5, 48, 64, seed=3)
    plain = list(segment_video(frames, model, flow="dis", batch_size=2, prefetch=False))
    ahead = list(segment_video(frames, model, flow="dis", batch_size=2, prefetch=True))
    assert [r.index for r in ahead] == [0, 1, 2, 3, 4]
    for a, b in zip(plain, ahead):
        assert np.array_equal(a.flow_image, b.flow_image) and np.array_equal(a.mask, b.mask)
        assert np.array_equal(a.probability, b.probability)


def test_prefetched_folder_output_equals_the_plain_one_and_a_failed_write_leaves_no_overlay(checkpoint, tmp_path,
                                                                                            monkeypatch):
    folder = tmp_path / "frames"
    for index, frame in enumerate(_frames(5, 48, 64, seed=4)):
        write_image(folder / f"{index:03d}.png", frame)
    model = load_model(checkpoint, options=SMALL)
    for prefetch in (False, True):  # True: frames prepared ahead and files written by a background thread
        timings = segment_to_folder(folder, tmp_path / str(prefetch), model, batch_size=2, progress=False,
                                    prefetch=prefetch, save_probabilities=True)
        assert timings.frames == 5 and timings.wall_seconds > 0
    for part in ("masks", "probabilities"):
        names = sorted(p.name for p in (tmp_path / "False" / part).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "True" / part).iterdir()) and len(names) == 5
        for name in names:
            assert (tmp_path / "False" / part / name).read_bytes() == (tmp_path / "True" / part / name).read_bytes()
    overlays = [list(open_frames(tmp_path / str(p) / "overlay.mp4")) for p in (False, True)]
    assert len(overlays[0]) == len(overlays[1]) == 5
    assert all(np.array_equal(a, b) for a, b in zip(*overlays)), "the overlay's frames stay in order"

    def failing_write(path, *args, **kwargs):
        if path.name == "003.png":  # masks of a frame folder are named after its frames (003.png)
            raise OSError(f"{path}: no space left on device")
        return original_write(path, *args, **kwargs)

    original_write = write_mask
    monkeypatch.setattr("hfan.segment.write_mask", failing_write)  # what segment_to_folder writes masks with
    with pytest.raises(OSError, match="no space left"):
        segment_to_folder(folder, tmp_path / "failed", model, batch_size=2, progress=False, prefetch=True)
    assert not (tmp_path / "failed" / "overlay.mp4").exists(), "a half-written video must not look complete"


def test_prefetched_keeps_order_raises_and_stops_its_thread():
    import threading

    assert list(prefetched(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("frame 2 is corrupt")

    items = prefetched(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="frame 2 is corrupt"):
        next(items)

    closed = threading.Event()

    def endless():
        try:
            count = 0
            while True:
                yield count
                count += 1
        finally:
            closed.set()  # the source is closed when the consumer stops early

    before = threading.active_count()
    items = prefetched(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert closed.wait(5) and threading.active_count() == before


def test_frame_folder_odd_size_and_one_frame_video(checkpoint, tmp_path):
    folder = tmp_path / "frames"
    for index, frame in enumerate(_frames(3, 45, 67)):
        write_image(folder / f"frame{index}.png", frame)
    assert main(["segment", str(folder), "--out", str(tmp_path / "a"), "--checkpoint", str(checkpoint),
                 "--no-overlay", "--save-flow", "--options", *SMALL]) == 0
    assert len(list((tmp_path / "a" / "masks").glob("*.png"))) == 3
    single = tmp_path / "single"
    write_image(single / "only.jpg", _frames(1, 50, 70)[0])
    assert main(["segment", str(single), "--out", str(tmp_path / "b"), "--checkpoint", str(checkpoint),
                 "--save-flow", "--options", *SMALL]) == 0
    flow_image = read_image(tmp_path / "b" / "flow" / "only.jpg")  # named after the input frame
    assert flow_image.min() >= 250, "a one-frame video gets a zero flow, drawn white"
    assert sum(1 for _ in open_frames(tmp_path / "b" / "overlay.mp4")) == 1


def test_bad_inputs_give_one_clear_error(checkpoint, tmp_path, capsys, monkeypatch):
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 1000)
    (tmp_path / "empty").mkdir()
    write_image(tmp_path / "one" / "0.jpg", _frames(1, 32, 32)[0])
    cases = [
        (["segment", str(tmp_path / "broken.mp4"), "--checkpoint", str(checkpoint)], "broken.mp4"),
        (["segment", str(tmp_path / "empty"), "--checkpoint", str(checkpoint)], "holds no frames"),
        (["segment", str(tmp_path / "nothing.mp4"), "--checkpoint", str(checkpoint)], "nothing.mp4 does not exist"),
        (["segment", str(tmp_path / "one"), "--checkpoint", str(tmp_path / "absent.pth")], "absent.pth does not exist"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        assert message in capsys.readouterr().err
    monkeypatch.setenv("HFAN_HOME", str(tmp_path / "home"))
    # without --checkpoint a paper preset is looked up in the cache (the default model needs no lookup)
    assert main(["segment", str(tmp_path / "empty"), "--model", "hfan-small"]) == 2
    err = capsys.readouterr().err
    assert "no weights for hfan-small" in err and "--checkpoint" in err and "HFAN-s-converted.pth" in err


@pytest.fixture(scope="module")
def davis_prepared(tmp_path_factory):
    """davis16_mini laid out as a DAVIS root, then `hfan prepare davis` (DIS flow)."""
    mini = shared_path("data/davis16_mini")
    root = tmp_path_factory.mktemp("davis")
    for part in ("JPEGImages", "Annotations"):
        shutil.copytree(mini / part, root / part)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("blackswan\ncar-shadow\nlibby\n")
    (root / "ImageSets" / "2016" / "train.txt").write_text("")
    out = tmp_path_factory.mktemp("prepared") / "DAVIS2SEG"
    assert main(["prepare", "davis", "--davis-root", str(root), "--out", str(out), "--splits", "val"]) == 0
    return root, out


@pytest.mark.slow
def test_prepare_infer_eval_end_to_end(checkpoint, davis_prepared, tmp_path, capsys):
    root, prepared = davis_prepared
    out = tmp_path / "pred"
    assert main(["infer", "--checkpoint", str(checkpoint), "--data", str(prepared), "--split", "val",
                 "--out", str(out), "--fast", "--options", *SMALL, "--eval", "--gt", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "139 frames written" in printed and "J&F-Mean" in printed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["blackswan", "car-shadow", "libby"]
    assert len(list(out.glob("*/*.png"))) == 139
    # The masks written equal what a Predictor returns for the same frame and flow image.
    model = load_model(checkpoint, options=SMALL + ["test.mode=whole"])
    frame = read_image(prepared / "frame" / "val" / "libby_00007.jpg")
    flow_image = read_image(prepared / "flow" / "val" / "libby_00007.jpg")
    written = cv2.imread(str(out / "libby" / "00007.png"), cv2.IMREAD_UNCHANGED)
    prediction = Predictor(model).predict([frame], [flow_image])[0]
    # Batched and single forwards differ by float rounding: equal wherever the pixel is not a near-tie.
    decided = np.abs(prediction.probability - 0.5) > 1e-4
    assert decided.mean() > 0.9
    assert np.array_equal((written == 255)[decided], prediction.mask[decided])


@pytest.mark.slow
def test_infer_resumes_after_being_killed(checkpoint, davis_prepared, tmp_path):
    _, prepared = davis_prepared
    out = tmp_path / "pred"
    # Twice the usual test scale: the run must last long enough (~10 s) to be killed in the middle even when a
    # loaded machine delays this polling loop.
    command = [sys.executable, "-m", "hfan", "infer", "--checkpoint", str(checkpoint), "--data", str(prepared),
               "--out", str(out), "--batch-size", "1", "--options", "test.img_scale=512,256"]
    log = tmp_path / "first_run.log"
    with open(log, "w") as stream:
        process = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
        deadline = time.time() + 300  # generous: a loaded 2-core machine starts python + torch slowly
        while len(list(out.glob("*/*.png"))) < 5 and time.time() < deadline and process.poll() is None:
            time.sleep(0.1)
        exited_early = process.poll()
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert exited_early is None, f"hfan infer ended before it was killed:\n{log.read_text()[-2000:]}"
    # a mask being written at the kill is a temporary file (also *.png): the rerun removes it, it is not done
    done_before = {p: p.stat().st_mtime_ns for p in out.glob("*/*.png") if not is_temp_path(p)}
    assert 5 <= len(done_before) < 139
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert f"{len(done_before)} already complete" in result.stdout
    assert len(list(out.glob("*/*.png"))) == 139
    assert all(p.stat().st_mtime_ns == t for p, t in done_before.items()), "complete frames are not redone"
    assert not [p for p in out.rglob("*") if p.name.startswith(".")], "no partial file survives"
    for mask in out.glob("*/*.png"):
        assert cv2.imread(str(mask), cv2.IMREAD_UNCHANGED) is not None


def test_readme_example_runs():
    video = shared_path("data/videos/tree.avi")
    example = PROJECT_ROOT / "examples" / "segment_with_random_weights.py"
    result = subprocess.run([sys.executable, str(example), str(video)], capture_output=True, text=True, check=True)
    assert "frame 4:" in result.stdout and "frame 5:" not in result.stdout
    assert "one frame through a Predictor: (240, 320)" in result.stdout


def test_segment_video_makes_the_flow_the_model_was_trained_on():
    """The model's `flow` settings (scale, camera-motion removal, DIS preset) decide the flow images it gets."""
    from hfan.flow import build_flow_estimator
    from hfan.flow.model_input import ScaledFlowEstimator, flow_image_for_model

    config = apply_overrides(get_preset("hfan-default"), ["flow.scale=0.5", "flow.dis_preset=ultrafast"])
    model = build_model(config).eval()
    frames = _frames(3, 64, 96)
    results = list(segment_video(frames, model, batch_size=2))
    estimator = ScaledFlowEstimator(build_flow_estimator("dis", preset="ultrafast"), 0.5)
    expected = flow_image_for_model(estimator(frames[0], frames[1]), "affine", (96, 64))
    assert np.array_equal(results[0].flow_image, expected)
    raw = flow_image_for_model(build_flow_estimator("dis", preset="ultrafast")(frames[0], frames[1]))
    assert not np.array_equal(results[0].flow_image, raw)
    # --flow replaces the estimator only: the camera motion is still removed
    farneback = list(segment_video(frames, model, flow="farneback", batch_size=2))
    scaled = ScaledFlowEstimator(build_flow_estimator("farneback"), 0.5)
    assert np.array_equal(farneback[0].flow_image,
                          flow_image_for_model(scaled(frames[0], frames[1]), "affine", (96, 64)))


def test_temporal_mean_averages_centred_windows_and_keeps_the_order():
    from hfan.segment import FrameResult, mean_over_time

    frame = np.zeros((2, 2, 3), np.uint8)
    values = [0.0, 0.9, 0.3, 0.6, 0.9]
    results = [FrameResult(i, frame, frame, np.full((2, 2), v, np.float32), np.full((2, 2), v > 0.5))
               for i, v in enumerate(values)]
    assert list(mean_over_time(iter(results), 0)) == results
    smoothed = list(mean_over_time(iter(results), 1))
    assert [r.index for r in smoothed] == [0, 1, 2, 3, 4]
    expected = [0.45, 0.4, 0.6, 0.6, 0.75]  # the first and last windows hold 2 frames
    assert np.allclose([r.probability[0, 0] for r in smoothed], expected)
    assert [bool(r.mask[0, 0]) for r in smoothed] == [v > 0.5 for v in expected]
    longer = list(mean_over_time(iter(results[:2]), 5))  # a window longer than the video
    assert np.allclose([r.probability[0, 0] for r in longer], [0.45, 0.45])


def test_segment_video_applies_the_models_temporal_mean():
    model = build_model(apply_overrides(get_preset("hfan-b0"), SMALL + ["test.mode=whole"])).eval()
    frames = _frames(4, 64, 96)
    plain = list(segment_video(frames, model, batch_size=2))
    model.config.test.temporal_mean = 1
    smoothed = list(segment_video(frames, model, batch_size=2))
    assert np.allclose(smoothed[1].probability, np.mean([p.probability for p in plain[:3]], axis=0), atol=1e-6)
    assert np.array_equal(smoothed[1].mask, smoothed[1].probability > 0.5)


def test_cutout_is_the_frame_on_the_mask_transparent_png_and_green_h264(checkpoint, tmp_path):
    import av

    from hfan.io.images import CUTOUT_GREEN

    video = shared_path("data/videos/tree.avi")
    out = tmp_path / "tree"
    assert main(["segment", str(video), "--out", str(out), "--checkpoint", str(checkpoint), "--fast", "--cutout",
                 "--end", "12", "--options", *SMALL]) == 0
    masks = sorted((out / "masks").glob("*.png"))
    cutouts = sorted((out / "cutouts").glob("*.png"))
    assert [p.name for p in cutouts] == [p.name for p in masks] and len(masks) == 12
    frames = list(open_frames(video))[:12]
    for frame, mask_path, cutout_path in zip(frames, masks, cutouts):
        rgba = cv2.cvtColor(cv2.imread(str(cutout_path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED) > 0
        np.testing.assert_array_equal(rgba[..., 3], mask * 255)  # opaque exactly on the mask
        np.testing.assert_array_equal(rgba[..., :3][mask], frame[mask])
    with av.open(str(out / "cutout.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 12
    # Where the mask is empty the frame is the key colour (lossy H.264: within a few levels, away from edges).
    mask = cv2.imread(str(masks[0]), cv2.IMREAD_UNCHANGED) > 0
    background = cv2.erode((~mask).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert background.mean() > 0.3  # this checkpoint's mask leaves most of the frame out
    assert np.abs(decoded[0][background].astype(int) - CUTOUT_GREEN).mean() < 6
