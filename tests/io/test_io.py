import tracemalloc

import numpy as np
import pytest
from PIL import Image

from helpers.shared import shared_path
from hfan.io.video import VideoWriter, open_frames
from hfan.files import atomic_path, remove_temp_files
from hfan.io.images import overlay_mask, read_image, read_mask, write_image, write_mask, write_overlay


def _smooth_frame(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    phase = seed * 0.7
    channels = [128 + 100 * np.sin(xs / 9 + phase + c) * np.cos(ys / 13 - c) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.uint8)


# ------------------------------------------------------------------------------------------- real videos
def test_reads_tree_avi_whose_header_overstates_its_length():
    import av  # the decoder OpenCV's frames are compared with
    path = shared_path("data/videos/tree.avi")
    source = open_frames(path)
    assert source.size == (320, 240)
    assert source.fps == pytest.approx(15.0, abs=1e-3)
    assert source.claimed_frame_count == 444  # what the header claims ...
    assert source.frame_count == 68  # ... and what the file holds (PyAV's probe counts its packets)
    frames = list(source)
    assert len(frames) == 68
    assert all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    with av.open(str(path)) as container:
        reference = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(reference) == 68
    np.testing.assert_array_equal(frames[0], reference[0])
    np.testing.assert_array_equal(frames[-1], reference[-1])


def test_reads_megamind_lazily():
    path = shared_path("data/videos/Megamind.avi")
    source = open_frames(path)
    assert (source.size, source.frame_count) == ((720, 528), 270)
    assert source.fps == pytest.approx(23.976, abs=1e-3)
    tracemalloc.start()
    count = sum(1 for _ in source)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 270
    assert peak < 20 * 2**20  # 270 frames held at once would be 300 MB; one is 1.1 MB


# --------------------------------------------------------------------------------------------- folders
def test_frame_folder_in_natural_order(tmp_path):
    for seed, name in enumerate(["frame10.png", "frame2.png", "frame1.png"]):
        Image.fromarray(_smooth_frame(seed)).save(tmp_path / name)
    source = open_frames(tmp_path, fps=12)
    assert [p.name for p in source.frame_paths] == ["frame1.png", "frame2.png", "frame10.png"]
    assert (source.size, source.fps, source.frame_count) == ((128, 96), 12, 3)
    np.testing.assert_array_equal(next(iter(source)), _smooth_frame(2))


def test_input_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        open_frames(tmp_path / "nothing.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty holds no frames"):
        open_frames(empty)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(_smooth_frame(0)).save(mixed / "00000.png")
    Image.fromarray(_smooth_frame(1, 96, 100)).save(mixed / "00001.png")
    with pytest.raises(ValueError, match=r"00001.png is 100x96 but .*00000.png is 128x96"):
        open_frames(mixed)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match="garbage.mp4: cannot be opened as a video"):
        open_frames(garbage)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt: cannot be opened as a video"):
        open_frames(text)
    not_an_image = tmp_path / "bad"
    not_an_image.mkdir()
    (not_an_image / "00000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="00000.jpg: not a readable image"):
        open_frames(not_an_image)


def test_truncated_jpeg_is_an_error_not_a_grey_frame(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    write_image(folder / "00000.jpg", _smooth_frame(0))
    data = (folder / "00000.jpg").read_bytes()
    (folder / "00000.jpg").write_bytes(data[: len(data) // 2])
    source = open_frames(folder)  # the header is intact
    with pytest.raises(ValueError, match="00000.jpg: not a readable image"):
        list(source)


# --------------------------------------------------------------------------------------------- writers
def test_atomic_writes_leave_no_partial_file(tmp_path):
    target = tmp_path / "out" / "image.jpg"
    write_image(target, _smooth_frame(0))
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temp:
            assert temp.parent == target.parent and temp.suffix == ".jpg" and temp.name.startswith(".")
            temp.write_bytes(b"half an image")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["image.jpg"]
    (target.parent / ".image.tmp-1-abcd.jpg").write_bytes(b"left by a killed process")
    assert remove_temp_files(target.parent) == 1
    assert [p.name for p in target.parent.iterdir()] == ["image.jpg"]


def test_write_image_round_trips_png_exactly(tmp_path):
    frame = _smooth_frame(3)
    write_image(tmp_path / "f.png", frame)
    np.testing.assert_array_equal(read_image(tmp_path / "f.png"), frame)
    with pytest.raises(ValueError, match="uint8"):
        write_image(tmp_path / "g.png", frame.astype(np.float32))


def test_mask_writer_values_and_reader(tmp_path):
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:7] = True
    write_mask(tmp_path / "ids.png", mask)
    write_mask(tmp_path / "vis.png", mask, foreground_value=255)
    ids, vis = np.asarray(Image.open(tmp_path / "ids.png")), np.asarray(Image.open(tmp_path / "vis.png"))
    assert ids.ndim == 2 and set(np.unique(ids)) == {0, 1}
    assert set(np.unique(vis)) == {0, 255}
    np.testing.assert_array_equal(read_mask(tmp_path / "ids.png"), mask)
    np.testing.assert_array_equal(read_mask(tmp_path / "vis.png"), mask)
    palette = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
    palette.save(tmp_path / "objects.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "objects.png"), [[False, True], [True, False]])
    with pytest.raises(ValueError, match=".png"):
        write_mask(tmp_path / "mask.jpg", mask)


def test_overlay_tints_only_the_mask(tmp_path):
    frame = _smooth_frame(4, 6, 8)
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True
    out = overlay_mask(frame, mask, color=(255, 0, 0), alpha=0.5)
    np.testing.assert_array_equal(out[~mask], frame[~mask])
    expected = np.rint(0.5 * frame[mask].astype(np.float32) + 0.5 * np.array([255, 0, 0], np.float32))
    np.testing.assert_array_equal(out[mask], expected.astype(np.uint8))
    write_overlay(tmp_path / "o.png", frame, mask)
    np.testing.assert_array_equal(read_image(tmp_path / "o.png"), out)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_writer_keeps_fps_and_frames(tmp_path, suffix):
    frames = [_smooth_frame(seed) for seed in range(12)]
    path = tmp_path / f"overlay{suffix}"
    with VideoWriter(path, fps=12.5) as writer:
        for frame in frames:
            writer.write(frame)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    source = open_frames(path)
    assert source.fps == pytest.approx(12.5) and source.size == (128, 96)
    decoded = list(source)
    assert len(decoded) == 12
    assert np.abs(decoded[5].astype(int) - frames[5]).mean() < 6  # lossy codecs, smooth content


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_mp4_is_h264_that_browsers_play_with_every_frame_decodable(tmp_path, suffix):
    """H.264 in yuv420p (the only layout every browser decodes), odd sizes padded to even, the source's rate."""
    import av

    frames = [_smooth_frame(seed, 95, 127) for seed in range(9)]
    path = tmp_path / f"overlay{suffix}"
    with VideoWriter(path, fps=29.97) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.codec == "h264"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (128, 96)
        assert float(stream.average_rate) == pytest.approx(29.97, abs=1e-3)
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 9
    assert np.abs(decoded[4][:95, :127].astype(int) - frames[4]).mean() < 4


def test_without_libx264_mp4_falls_back_to_mpeg4_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr("hfan.io.video.h264_available", lambda: False)
    with pytest.warns(UserWarning, match="browsers do not play"):
        writer = VideoWriter(tmp_path / "overlay.mp4", fps=10)
    with writer:
        for seed in range(3):
            writer.write(_smooth_frame(seed))
    assert writer.codec == "mp4v" and len(list(open_frames(tmp_path / "overlay.mp4"))) == 3


def test_video_writer_failure_leaves_nothing(tmp_path):
    path = tmp_path / "broken.mp4"
    with pytest.raises(ValueError, match="is 100x96, the video is 128x96"):
        with VideoWriter(path, fps=10) as writer:
            writer.write(_smooth_frame(0))
            writer.write(_smooth_frame(1, 96, 100))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="extension"):
        VideoWriter(tmp_path / "x.gif", fps=10)
