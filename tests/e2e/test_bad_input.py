"""Bad input and interruptions at the command level (issue 13): one line naming what is wrong, exit 2 (130 for an
interrupt), no traceback, checked before the model loads; no output that mixes runs. docs/bad_input.md lists the
cases. The io-level cases (broken videos, image modes, full disk) are in tests/io/."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hfan import build_model, get_preset, save_checkpoint
from hfan.cli import main
from hfan.datasets.layouts import SegmentOutput
from hfan.io.images import write_image

SMALL = ["--fast", "--options", "test.img_scale=256,64"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "b0.pth", build_model("hfan-b0"),
                           get_preset("hfan-b0"))


@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(1)
    return save_checkpoint(tmp_path_factory.mktemp("weights") / "b0-other.pth", build_model("hfan-b0"),
                           get_preset("hfan-b0"))


@pytest.fixture()
def frames(tmp_path) -> Path:
    folder = tmp_path / "clip"
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for i in range(6):
        write_image(folder / f"img_{i * 10}.jpg", np.ascontiguousarray(np.roll(base, 3 * i, axis=1)[:96, :128]))
    return folder


@pytest.fixture()
def no_model(monkeypatch):
    """Fails the test if a model gets loaded: the error must come before."""
    import hfan.inference.predictor as predictor

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(predictor, "load_predictor", refuse)


def _fails(argv, capsys, *needles) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def test_segment_names_masks_after_the_input_frames_and_selects_a_range(checkpoint, frames, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(frames), "--out", str(out), "--checkpoint", str(checkpoint), "--start", "1",
                 "--stride", "2", "--fps", "10", *SMALL]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["img_10.png", "img_30.png", "img_50.png"]
    assert (out / SegmentOutput.RECORD).is_file()


def test_segment_refuses_an_output_of_another_run_until_overwrite(checkpoint, other_checkpoint, frames, tmp_path,
                                                                   capsys, no_model):
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    stale = out / "masks" / "img_999.png"
    stale.write_bytes(b"old")
    _fails(["segment", frames, "--out", out, "--checkpoint", checkpoint, *SMALL], capsys, str(out), "--overwrite")
    assert stale.is_file()


def test_segment_overwrite_and_reruns_leave_no_stale_masks(checkpoint, other_checkpoint, frames, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(frames), "--out", str(out), "--checkpoint", str(checkpoint), *SMALL]) == 0
    assert len(list((out / "masks").iterdir())) == 6
    # the same job again: redone in place
    assert main(["segment", str(frames), "--out", str(out), "--checkpoint", str(checkpoint), *SMALL]) == 0
    # fewer frames, other weights: refused, then replaced with --overwrite, and only the new masks remain
    capsys.readouterr()
    _fails(["segment", frames, "--out", out, "--checkpoint", other_checkpoint, "--end", "3", *SMALL], capsys,
           "another run", "weights_sha256")
    assert main(["segment", str(frames), "--out", str(out), "--checkpoint", str(other_checkpoint), "--end", "3",
                 "--overwrite", *SMALL]) == 0
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["img_0.png", "img_10.png", "img_20.png"]


def test_a_killed_runs_temporary_overlay_is_removed(checkpoint, frames, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    leftover = out / ".overlay.tmp-123-abcd.mp4"
    leftover.write_bytes(b"partial")
    assert main(["segment", str(frames), "--out", str(out), "--checkpoint", str(checkpoint), *SMALL]) == 0
    assert not leftover.exists() and (out / "overlay.mp4").is_file()


@pytest.mark.parametrize("make", ["file", "readonly"])
def test_an_unusable_output_folder_is_reported_before_the_model_loads(checkpoint, frames, tmp_path, capsys,
                                                                       no_model, monkeypatch, make):
    if make == "file":
        out = tmp_path / "taken"
        out.write_text("x")
        needle = "is a file"
    else:
        parent = tmp_path / "locked"
        parent.mkdir()
        parent.chmod(0o500)
        out = parent / "out"
        needle = "permission denied"
        if os.geteuid() == 0:  # root may write anywhere: the check asks os.access, so make it answer as for a user
            real_access = os.access
            monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == parent
                                else real_access(path, mode))
    _fails(["segment", frames, "--out", out, "--checkpoint", checkpoint], capsys, str(out), needle)


@pytest.mark.parametrize("device, needle", [("gpu0", "not a device name"), ("cuda:7", "cuda")])
def test_a_bad_device_is_reported_before_the_model_loads(checkpoint, frames, tmp_path, capsys, no_model, device,
                                                         needle):
    if device == "cuda:7" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    _fails(["segment", frames, "--out", tmp_path / "out", "--checkpoint", checkpoint, "--device", device], capsys,
           f"--device {device}", needle)


@pytest.mark.parametrize("flag", [["--batch-size", "0"], ["--batch-size", "-2"], ["--stride", "0"],
                                  ["--flow", "lucas"]])
def test_bad_numbers_and_names_are_argument_errors(frames, capsys, flag):
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", str(frames), *flag])
    assert exit_info.value.code == 2
    assert flag[0] in capsys.readouterr().err


def test_an_unknown_preset_says_so(frames, capsys, no_model):
    _fails(["segment", frames, "--model", "hfan-xl"], capsys, "hfan-xl", "not a preset")


def test_a_bad_flow_option_is_reported_before_the_model_loads(frames, prepared, tmp_path, capsys, no_model):
    _fails(["segment", frames, "--out", tmp_path / "out", "--options", "flow.dis_preset=fine"], capsys,
           "flow.dis_preset", "'fine'", "medium")
    (tmp_path / "any.pth").write_bytes(b"never loaded")
    _fails(["infer", "--checkpoint", tmp_path / "any.pth", "--data", prepared, "--out", tmp_path / "p",
            "--options", "test.mode=tiles"], capsys, "test.mode", "'tiles'", "whole")


def test_a_file_that_is_not_a_checkpoint_never_gets_the_weights_only_advice(frames, tmp_path, capsys, no_model):
    import pickle

    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(4096))
    pickled = tmp_path / "string.pth"
    pickled.write_bytes(pickle.dumps("just a string"))
    from hfan.models.checkpoints import load_model

    for path in (junk, pickled):
        with pytest.raises(ValueError) as error:
            load_model(path)
        assert str(path) in str(error.value) and "weights_only" not in str(error.value)


def test_infer_needs_a_checkpoint(tmp_path, capsys):
    _fails(["infer", "--model", "hfan-b0", "--data", tmp_path, "--out", tmp_path / "out"], capsys,
           "--checkpoint", "random")


def test_export_out_that_is_a_folder(checkpoint, tmp_path, capsys):
    _fails(["export", "onnx", "--checkpoint", checkpoint, "--out", tmp_path], capsys, "is a folder")
    _fails(["export", "weights", checkpoint, "--out", tmp_path], capsys, "is a folder")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.startswith("hfan ")


def test_the_default_output_of_a_dot_is_named_after_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert SegmentOutput.default_root(".") == tmp_path.parent / f"{tmp_path.name}_hfan"


def test_sigint_ends_in_one_line_and_exit_130(tmp_path):
    """A real SIGINT in the middle of `hfan segment` on the sample clip with the default model."""
    project = Path(__file__).resolve().parents[2]
    out = tmp_path / "out"
    command = [sys.executable, "-m", "hfan", "segment", str(project / "examples" / "blackswan.mp4"), "--out",
               str(out), "--no-overlay"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(out.glob("masks/*.png")) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert not [p for p in out.rglob(".*")], "no temporary file is left"


@pytest.fixture()
def prepared(tmp_path) -> Path:
    """A tiny prepared dataset (flat layout, no masks): what `hfan infer` reads."""
    from hfan.datasets.layouts import FlatLayout

    layout = FlatLayout(tmp_path / "prepared")
    rng = np.random.default_rng(2)
    for index in range(3):
        write_image(layout.frame_path("val", "clip", index), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
        write_image(layout.flow_path("val", "clip", index), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    return layout.root


def test_infer_refuses_masks_of_another_run_and_says_when_nothing_is_left(checkpoint, other_checkpoint, prepared,
                                                                          tmp_path, capsys):
    out = tmp_path / "pred"
    command = ["infer", "--data", str(prepared), "--out", str(out), *SMALL]
    assert main([*command, "--checkpoint", str(checkpoint)]) == 0
    assert main([*command, "--checkpoint", str(checkpoint)]) == 0
    assert "0 frames written, 3 already complete: nothing left to do" in capsys.readouterr().out
    _fails([*command, "--checkpoint", other_checkpoint], capsys, str(out), "another run", "--overwrite")
    _fails([*command, "--checkpoint", checkpoint, "--aug-test"], capsys, "different test")
    assert main([*command, "--checkpoint", str(other_checkpoint), "--overwrite"]) == 0
    assert "3 frames written, 0 already complete" in capsys.readouterr().out


def test_another_video_under_the_same_name_is_prepared_again(frames, tmp_path):
    from hfan.datasets.prepare import prepare_video

    out = tmp_path / "prepared"
    prepare_video(frames, out, name="clip")
    shorter = tmp_path / "shorter"
    shorter.mkdir()
    for path in sorted(frames.iterdir())[:3]:
        (shorter / path.name).write_bytes(path.read_bytes())
    (shorter / sorted(frames.iterdir())[2].name).write_bytes(sorted(frames.iterdir())[3].read_bytes())
    report = prepare_video(shorter, out, name="clip")
    assert report.videos_prepared == 1 and report.videos_skipped == 0
    assert len(list((out / "frame" / "val").iterdir())) == 3, "the longer video's frames are gone"


def test_fp16_on_the_cpu_warns_in_one_line(checkpoint, frames, tmp_path):
    # a subprocess: pytest would capture the warning before it reaches stderr
    result = subprocess.run([sys.executable, "-m", "hfan", "segment", str(frames), "--out", str(tmp_path / "out"),
                             "--checkpoint", str(checkpoint), "--precision", "bf16", "--end", "2", *SMALL],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and warnings[0].startswith("hfan: warning: bf16 on the CPU"), result.stderr


def test_eval_davis_warns_on_soft_probability_maps(tmp_path):
    from hfan.evaluation.davis import evaluate_davis
    from hfan.io.images import write_mask

    gt, pred = tmp_path / "gt" / "seq", tmp_path / "pred" / "seq"
    truth = np.zeros((24, 32), bool)
    truth[6:18, 8:24] = True
    for index in range(4):
        write_mask(gt / f"{index:05d}.png", truth, foreground_value=255)
        write_image(pred / f"{index:05d}.png", np.linspace(0, 255, 24 * 32).astype(np.uint8).reshape(24, 32))
    with pytest.warns(UserWarning, match="grey levels, not a binary mask"):
        evaluate_davis(tmp_path / "pred", tmp_path / "gt", workers=1, progress=False)
    for index in range(4):
        write_mask(pred / f"{index:05d}.png", truth, foreground_value=255)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert evaluate_davis(tmp_path / "pred", tmp_path / "gt", workers=1, progress=False).summary()["J-Mean"] == 1


def test_infer_refuses_a_partly_prepared_dataset(frames, tmp_path, capsys, no_model):
    """A prepare that was interrupted leaves frames of a video without its record: infer says so and how to
    finish, before the model loads; a dataset without hfan's records (another tool's) is not checked."""
    from hfan.datasets.prepare import prepare_video, record_path

    out = tmp_path / "prepared"
    prepare_video(frames, out, name="clip")
    record_path(out, "val", "clip").unlink()  # what a kill in the middle of the video leaves
    command = ["infer", "--checkpoint", str(tmp_path / "any.pth"), "--data", str(out), "--out", str(tmp_path / "p")]
    (tmp_path / "any.pth").write_bytes(b"never loaded")
    capsys.readouterr()
    _fails(command, capsys, "'clip'", "not completely prepared", "rerun the same `hfan prepare`")
    prepare_video(frames, out, name="clip")
    (out / "frame" / "val" / "clip_00005.jpg").unlink()
    (out / "flow" / "val" / "clip_00005.jpg").unlink()
    capsys.readouterr()
    _fails(command, capsys, "'clip'", "holds 5 frames", "recorded 6")
