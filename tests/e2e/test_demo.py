"""`hfan demo` without a browser: a job is `segment_file` into a folder of its own; bad uploads are refused before the
model loads. The browser test is tests/e2e/test_demo_browser.py."""
from __future__ import annotations

import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from helpers.shared import shared_path
from hfan import segment as segment_module
from hfan.cli import main
from hfan.demo import DemoSettings, flow_choices, model_choices, run_job
from hfan.io.images import write_image
from hfan.io.video import open_frames

TREE = "data/videos/tree.avi"


def _mask_values(folder):
    return {p.name: cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(folder.glob("*.png"))}


def test_two_jobs_at_once_get_their_own_folders_and_the_masks_of_hfan_segment(tmp_path):
    video = shared_path(TREE)
    settings = DemoSettings(workdir=tmp_path / "work")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: run_job(video, settings, progress=False), range(2))
    assert first.out != second.out and first.out.parent.parent == second.out.parent.parent == tmp_path / "work"
    assert first.frames == second.frames == 68
    with zipfile.ZipFile(first.masks_zip) as archive:
        names = sorted(archive.namelist())
    assert len(names) == 68 and all(n.startswith("masks/") and n.endswith(".png") for n in names)
    assert len(first.probabilities) == 68 and first.cutout.is_file()
    # The same code path as the command: identical masks.
    assert main(["segment", str(video), "--out", str(tmp_path / "cli")]) == 0
    expected = _mask_values(tmp_path / "cli" / "masks")
    for result in (first, second):
        got = _mask_values(result.out / "masks")
        assert list(got) == list(expected)
        assert all(np.array_equal(got[name], expected[name]) for name in expected)
    import av

    with av.open(str(first.overlay)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in container.decode(video=0)) == 68


def test_a_zip_of_frames_is_segmented_with_the_frames_names(tmp_path):
    frames = list(open_frames(shared_path(TREE)))[:5]
    archive_path = tmp_path / "frames.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for i, frame in enumerate(frames):
            write_image(tmp_path / f"shot_{i}.jpg", frame)
            archive.write(tmp_path / f"shot_{i}.jpg", f"clip/shot_{i}.jpg")  # inside a folder, as zips often are
        archive.writestr("clip/notes.txt", "not a frame")
    result = run_job(archive_path, DemoSettings(workdir=tmp_path / "work"), progress=False)
    assert result.frames == 5
    assert sorted(p.name for p in (result.out / "masks").glob("*.png")) == [f"shot_{i}.png" for i in range(5)]


@pytest.fixture
def model_never_loads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded for a bad upload")

    monkeypatch.setattr(segment_module, "segment_file", refuse)


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"these are notes, not a video", "notes.txt: cannot be opened as a video"),
    ("empty.mp4", b"", "empty.mp4: the upload is empty"),
    ("none.zip", None, "none.zip: the zip holds no frames"),
])
def test_bad_uploads_are_one_message_naming_the_file_before_the_model_loads(tmp_path, model_never_loads, name,
                                                                            content, message):
    upload = tmp_path / name
    if content is None:
        with zipfile.ZipFile(upload, "w") as archive:
            archive.writestr("readme.txt", "no frames here")
    else:
        upload.write_bytes(content)
    with pytest.raises(ValueError) as error:
        run_job(upload, DemoSettings(workdir=tmp_path / "work"), progress=False)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    assert list((tmp_path / "work").iterdir()) == []  # the failed job's folder is gone


def test_a_video_longer_than_the_limit_is_refused_saying_how_to_raise_it(tmp_path, model_never_loads):
    with pytest.raises(ValueError, match=r"tree.avi has 68 frames; this demo takes at most 10 .*--max-frames"):
        run_job(shared_path(TREE), DemoSettings(max_frames=10, workdir=tmp_path), progress=False)


def test_choices_offer_the_default_model_cached_checkpoints_and_dis_presets(tmp_path, monkeypatch):
    cache = tmp_path / "home" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "mine.pth").write_bytes(b"x")
    extra = tmp_path / "other.pth"
    extra.write_bytes(b"x")
    monkeypatch.setenv("HFAN_HOME", str(tmp_path / "home"))
    choices = model_choices(DemoSettings(checkpoints=[extra]))
    assert list(choices.values()) == ["default", str(extra), str(cache / "mine.pth")]
    flows = flow_choices()
    assert flows["the model's own (DIS)"] == (None, None)
    assert {"DIS ultrafast", "DIS fast", "DIS medium"} <= set(flows)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        run_job(extra, DemoSettings(), model="nope")


def test_hfan_demo_errors_are_one_line_before_serving(tmp_path, capsys, monkeypatch):
    assert main(["demo", "--checkpoint", str(tmp_path / "missing.pth")]) == 2
    assert capsys.readouterr().err.strip() == f"hfan demo: error: checkpoint {tmp_path / 'missing.pth'} does not exist"
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the demo extra were not installed
    assert main(["demo"]) == 2
    assert capsys.readouterr().err.strip() == "hfan demo: error: the demo needs Gradio: pip install 'hfan[demo]'"
