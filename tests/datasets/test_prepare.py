import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers.shared import shared_path
from hfan.cli import main
from hfan.io.images import read_image, read_mask, write_image, write_mask
from hfan.datasets.layouts import FlatLayout
from hfan.datasets.prepare import (FlowSettings, prepare_davis, prepare_video, prepare_youtube_vos, read_record, record_path)
from hfan.datasets.synthetic import make_video
from hfan.flow import build_flow_estimator, flow_to_hfan_image

DAVIS_MINI = {"blackswan": 50, "car-shadow": 40, "libby": 49}
ULTRAFAST = FlowSettings.of("dis", preset="ultrafast")


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------- DAVIS-2016 mini, real data
@pytest.fixture(scope="module")
def davis_mini(tmp_path_factory):
    source = shared_path("data/davis16_mini")
    root = tmp_path_factory.mktemp("davis")
    for folder in ("JPEGImages", "Annotations"):
        (root / folder).symlink_to(source / folder)
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("\n".join(DAVIS_MINI) + "\n")
    out = tmp_path_factory.mktemp("out") / "DAVIS2SEG"
    assert main(["prepare", "davis", "--davis-root", str(root), "--out", str(out), "--splits", "val",
                 "--dis-preset", "ultrafast", "--workers", "2"]) == 0
    return root, out


def _expected_flow_jpeg(tmp_path, frame_dir, first, second):
    frames = [read_image(frame_dir / f"{i:05d}.jpg") for i in (first, second)]
    flow = build_flow_estimator("dis", preset="ultrafast")(*frames)
    write_image(tmp_path / "expected.jpg", flow_to_hfan_image(flow))
    return (tmp_path / "expected.jpg").read_bytes()


@pytest.mark.slow
def test_davis_mini_gives_139_triples_with_right_names_and_values(davis_mini, tmp_path):
    root, out = davis_mini
    layout = FlatLayout(out)
    samples = layout.samples("val")
    assert len(samples) == 139
    assert [s.stem for s in samples] == [f"{video}_{i:05d}" for video, n in DAVIS_MINI.items() for i in range(n)]
    for sample in samples[::9]:
        source = root / "JPEGImages" / "480p" / sample.video / f"{sample.index:05d}.jpg"
        assert sample.frame.read_bytes() == source.read_bytes()  # copied byte for byte
        mask = np.asarray(Image.open(sample.mask))
        assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 1}
        annotation = np.asarray(Image.open(root / "Annotations" / "480p" / sample.video / f"{sample.index:05d}.png"))
        np.testing.assert_array_equal(mask, annotation > 127)
        assert Image.open(sample.flow).size == Image.open(sample.frame).size == mask.shape[::-1] == (854, 480)
    frame_dir = root / "JPEGImages" / "480p" / "blackswan"
    # Forward flow for frame 0, backward flow for the last frame (49 -> 48): the same bytes as computed here.
    assert layout.flow_path("val", "blackswan", 0).read_bytes() == _expected_flow_jpeg(tmp_path, frame_dir, 0, 1)
    assert layout.flow_path("val", "blackswan", 49).read_bytes() == _expected_flow_jpeg(tmp_path, frame_dir, 49, 48)


@pytest.mark.slow
def test_davis_mini_second_run_does_no_work(davis_mini):
    root, out = davis_mini
    before = _mtimes(out)
    report = prepare_davis(root, out, ["val"], ULTRAFAST, workers=2)
    assert (report.videos_prepared, report.videos_skipped, report.samples_total) == (0, 3, 139)
    assert _mtimes(out) == before


# ------------------------------------------------------------------------------ small synthetic DAVIS roots
def _synthetic_davis(root, videos, form="2017", split="train"):
    for k, (video, count) in enumerate(videos.items()):
        clip = make_video(k, num_frames=count, size=(64, 80))
        for t in range(count):
            write_image(root / "JPEGImages" / "480p" / video / f"{t:05d}.jpg", clip.frames[t])
            write_mask(root / "Annotations" / "480p" / video / f"{t:05d}.png", clip.union_masks[t], 255)
    if form == "2017":
        (root / "ImageSets" / "2016").mkdir(parents=True)
        (root / "ImageSets" / "2016" / f"{split}.txt").write_text("\n".join(videos) + "\n")
    else:
        lines = [f"/JPEGImages/480p/{v}/{t:05d}.jpg /Annotations/480p/{v}/{t:05d}.png"
                 for v, count in videos.items() for t in range(count)]
        (root / "ImageSets" / "480p").mkdir(parents=True)
        (root / "ImageSets" / "480p" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_interrupted_video_is_redone_and_others_skipped(tmp_path):
    root = _synthetic_davis(tmp_path / "DAVIS", {"a": 4, "b": 3})
    out = tmp_path / "out"
    prepare_davis(root, out, ["train"], ULTRAFAST)
    layout = FlatLayout(out)
    good_flow = layout.flow_path("train", "a", 2).read_bytes()
    b_times = {p: t for p, t in _mtimes(out).items() if "b_0" in p.name}
    # A crash while `a` was being prepared: no record yet, a damaged file, a writer's temporary file.
    record_path(out, "train", "a").unlink()
    layout.flow_path("train", "a", 2).write_bytes(good_flow[:100])
    stale = layout.flow_path("train", "a", 3).with_name(".a_00003.tmp-99-0123abcd.jpg")
    stale.write_bytes(b"partial")
    report = prepare_davis(root, out, ["train"], ULTRAFAST)
    assert report.prepared == ["a"] and report.videos_skipped == 1
    assert layout.flow_path("train", "a", 2).read_bytes() == good_flow
    assert not stale.exists()
    assert {p: t for p, t in _mtimes(out).items() if "b_0" in p.name} == b_times
    # A file missing from a recorded video, or other flow settings: redone too.
    layout.mask_path("train", "b", 1).unlink()
    assert prepare_davis(root, out, ["train"], ULTRAFAST).prepared == ["b"]
    assert prepare_davis(root, out, ["train"], FlowSettings.of("dis", preset="fast")).videos_prepared == 2


def test_davis_2016_imagesets_and_raw_flow(tmp_path):
    root = _synthetic_davis(tmp_path / "DAVIS", {"clip": 3}, form="2016", split="val")
    out = tmp_path / "out"
    report = prepare_davis(root, out, ["val"], FlowSettings.of("dis", save_raw=True, preset="ultrafast"))
    assert report.samples_written == 3
    frames = [read_image(root / "JPEGImages" / "480p" / "clip" / f"{t:05d}.jpg") for t in range(3)]
    raw = np.load(FlatLayout(out).raw_flow_path("val", "clip", 2))
    assert raw.dtype == np.float16 and raw.shape == (64, 80, 2)
    expected = build_flow_estimator("dis", preset="ultrafast")(frames[2], frames[1])  # last frame: backward
    np.testing.assert_allclose(raw, expected, atol=0.01, rtol=0.002)
    assert read_record(out, "val", "clip")["indices"] == [0, 1, 2]


def test_bad_davis_input_is_one_clear_error(tmp_path, capsys):
    root = _synthetic_davis(tmp_path / "DAVIS", {"a": 3})
    (root / "Annotations" / "480p" / "a" / "00001.png").unlink()
    assert main(["prepare", "davis", "--davis-root", str(root), "--out", str(tmp_path / "o"), "--splits", "train"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("hfan prepare: error:") and "a/00001.png does not exist" in error and "\n" not in error
    assert main(["prepare", "davis", "--davis-root", str(root), "--out", str(tmp_path / "o"), "--splits", "val"]) == 2
    assert "ImageSets/2016/val.txt" in capsys.readouterr().err
    write_mask(root / "Annotations" / "480p" / "a" / "00001.png", np.zeros((10, 10), bool), 255)
    with pytest.raises(ValueError, match="00001.png is 10x10 but its frame is 80x64"):
        prepare_davis(root, tmp_path / "o", ["train"], ULTRAFAST)
    with pytest.raises(ValueError, match="--workers > 1 is for the CPU methods"):
        prepare_davis(root, tmp_path / "o", ["train"], FlowSettings.of("raft_small", weights=None), workers=2)


# ----------------------------------------------------------------------------------------------- YouTube-VOS
def _synthetic_youtube_vos(root, with_all_frames):
    clip = make_video(3, num_frames=11, size=(64, 80), num_objects=2)
    (root / "train" / "Annotations" / "vid1").mkdir(parents=True)
    for t in range(11):
        if with_all_frames:
            write_image(root / "train_all_frames" / "JPEGImages" / "vid1" / f"{t:05d}.jpg", clip.frames[t])
        if t % 5 == 0:  # the official train split annotates every 5th frame
            write_image(root / "train" / "JPEGImages" / "vid1" / f"{t:05d}.jpg", clip.frames[t])
            palette = Image.fromarray(clip.instances[t], mode="P")  # object ids 1, 2
            palette.putpalette([0, 0, 0, 236, 95, 103, 249, 145, 87])
            palette.save(root / "train" / "Annotations" / "vid1" / f"{t:05d}.png")
    return root, clip


@pytest.mark.parametrize("with_all_frames", [True, False])
def test_youtube_vos_annotated_frames_with_flow_from_the_full_video(tmp_path, with_all_frames):
    root, clip = _synthetic_youtube_vos(tmp_path / "YTVOS", with_all_frames)
    out = tmp_path / "YouTube2SEG"
    prepare_youtube_vos(root, out, FlowSettings.of("dis", save_raw=True, preset="ultrafast"))
    layout = FlatLayout(out)
    assert [s.stem for s in layout.samples("train")] == ["vid1_00000", "vid1_00005", "vid1_00010"]
    np.testing.assert_array_equal(read_mask(layout.mask_path("train", "vid1", 5)), clip.union_masks[5])
    assert set(np.unique(np.asarray(Image.open(layout.mask_path("train", "vid1", 5))))) == {0, 1}
    flow_dir = root / ("train_all_frames" if with_all_frames else "train") / "JPEGImages" / "vid1"
    partner = 6 if with_all_frames else 10  # the true next frame, else the next annotated one
    dis = build_flow_estimator("dis", preset="ultrafast")
    expected = dis(read_image(flow_dir / "00005.jpg"), read_image(flow_dir / f"{partner:05d}.jpg"))
    np.testing.assert_allclose(np.load(layout.raw_flow_path("train", "vid1", 5)), expected, atol=0.01, rtol=0.002)


# -------------------------------------------------------------------------------------------------- any video
def test_prepare_video_file_for_inference(tmp_path, capsys):
    video = shared_path("data/videos/tree.avi")
    out = tmp_path / "out"
    assert main(["prepare", "video", str(video), "--out", str(out), "--dis-preset", "ultrafast"]) == 0
    assert "68 samples" in capsys.readouterr().out
    samples = FlatLayout(out).samples("val", require_masks=False)
    assert len(samples) == 68 and samples[0].stem == "tree_00000" and samples[-1].stem == "tree_00067"
    assert Image.open(samples[0].flow).size == (320, 240)
    record = read_record(out, "val", "tree")
    assert record["fps"] == pytest.approx(15.0, abs=1e-3) and record["size"] == [320, 240]
    assert not (out / "mask").exists()
    assert prepare_video(video, out, FlowSettings.of("dis", preset="ultrafast")).videos_skipped == 1


def test_prepare_frame_folder_copies_jpegs(tmp_path):
    clip = make_video(9, num_frames=3, size=(64, 80))
    for t in range(3):
        write_image(tmp_path / "my clip" / f"img{t + 1}.jpg", clip.frames[t])
    out = tmp_path / "out"
    prepare_video(tmp_path / "my clip", out, ULTRAFAST, fps=10)
    layout = FlatLayout(out)
    assert [s.stem for s in layout.samples("val", require_masks=False)] == [f"my-clip_{t:05d}" for t in range(3)]
    assert layout.frame_path("val", "my-clip", 1).read_bytes() == (tmp_path / "my clip" / "img2.jpg").read_bytes()
    assert read_record(out, "val", "my-clip")["fps"] == 10


def test_camera_motion_removal_is_a_flow_setting_of_prepare(tmp_path):
    from hfan.flow.model_input import flow_image_for_model

    clip = make_video(4, num_frames=3, size=(64, 80))
    for t in range(3):
        write_image(tmp_path / "clip" / f"{t:05d}.png", clip.frames[t])
    raw, residual = tmp_path / "raw", tmp_path / "residual"
    prepare_video(tmp_path / "clip", raw, ULTRAFAST, fps=10)
    assert main(["prepare", "video", str(tmp_path / "clip"), "--out", str(residual), "--dis-preset", "ultrafast",
                 "--camera-motion", "affine"]) == 0
    record = read_record(residual, "val", "clip")
    assert record["flow"]["camera_motion"] == "affine" and "camera_motion" not in read_record(raw, "val", "clip")["flow"]
    flow = build_flow_estimator("dis", preset="ultrafast")(clip.frames[0], clip.frames[1])
    write_image(tmp_path / "expected.jpg", flow_image_for_model(flow, "affine"))
    flow_file = FlatLayout(residual).flow_path("val", "clip", 0)
    assert flow_file.read_bytes() == (tmp_path / "expected.jpg").read_bytes()
    assert flow_file.read_bytes() != FlatLayout(raw).flow_path("val", "clip", 0).read_bytes()
    # another camera setting is another output: the rerun redoes the video
    assert prepare_video(tmp_path / "clip", residual, ULTRAFAST, fps=10).videos_skipped == 0


def _children(pid):
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from Linux's /proc")
def test_workers_stop_when_prepare_is_killed(tmp_path):
    """kill -9 of `hfan prepare --workers 2` leaves no worker writing on; the rerun completes the dataset."""
    source = shared_path("data/davis16_mini")
    root = tmp_path / "davis"
    for folder in ("JPEGImages", "Annotations"):
        (root / folder).mkdir(parents=True)
        (root / folder / "480p").symlink_to(source / folder / "480p")
    (root / "ImageSets" / "2016").mkdir(parents=True)
    (root / "ImageSets" / "2016" / "val.txt").write_text("\n".join(DAVIS_MINI) + "\n")
    out = tmp_path / "prepared"
    command = [sys.executable, "-m", "hfan", "prepare", "davis", "--davis-root", str(root), "--out", str(out),
               "--splits", "val", "--workers", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while len(list(out.glob("flow/val/*.jpg"))) < 4 and time.time() < deadline and process.poll() is None:
            time.sleep(0.05)
        workers = _children(process.pid)
        assert process.poll() is None and workers, "prepare ended before it was killed"
    finally:
        process.kill()
        process.wait()
    at_kill = len(list(out.rglob("*")))
    deadline = time.time() + 10
    while any(_alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its killed parent by 10 s"
    # Each worker may finish the sample it was writing (frame, flow, mask), not the rest of its video.
    assert len(list(out.rglob("*"))) - at_kill <= 3 * len(workers), "workers went on writing after the kill"
    assert main(["prepare", "davis", "--davis-root", str(root), "--out", str(out), "--splits", "val",
                 "--workers", "2"]) == 0
    assert len(list(out.glob("flow/val/*.jpg"))) == sum(DAVIS_MINI.values())
