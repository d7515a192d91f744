import csv
import json

import pytest
from helpers.shared import shared_path
from helpers.mask_folders import moving_squares, soft_maps, synthetic_dataset, write_sequence
from PIL import Image

from hfan.cli import main
from hfan.evaluation import evaluate_vsod


def _rows(path):
    with open(path) as file:
        return list(csv.DictReader(file))


def test_davis_on_shared_data_writes_official_numbers_side_by_side(tmp_path, capsys):
    mini = shared_path("data/davis16_mini")
    osvos, gt_masks = mini / "predictions" / "osvos_bin", mini / "Annotations" / "480p"
    out = tmp_path / "report"
    assert main(["eval", "davis", "--pred", str(osvos), str(gt_masks), "--names", "osvos", "gt",
                 "--gt", str(mini), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Global results for davis16_mini" in printed and "Per sequence results" in printed
    assert " Method J&F-Mean   J-Mean J-Recall  J-Decay   F-Mean F-Recall  F-Decay" in printed

    with open(mini / "reference" / "osvos_bin_perframe_official.csv") as file:
        reference = {(row["sequence"], row["frame"]): row for row in csv.DictReader(file)}
    per_frame = [row for row in _rows(out / "davis_per_frame.csv") if row["Method"] == "osvos"]
    assert len(per_frame) == len(reference) == 133
    for row in per_frame:
        official = reference[(row["Sequence"], row["Frame"])]
        assert float(row["J"]) == pytest.approx(float(official["J"]), abs=1e-6)
        assert float(row["F"]) == pytest.approx(float(official["F"]), abs=1e-6)

    global_rows = {row["Method"]: row for row in _rows(out / "davis_global.csv")}
    sequences = [row for row in _rows(out / "davis_per_sequence.csv") if row["Method"] == "osvos"]
    assert float(global_rows["osvos"]["J-Mean"]) == pytest.approx(
        sum(float(row["J-Mean"]) for row in sequences) / 3, abs=1e-9)
    assert all(float(global_rows["gt"][key]) == 1 for key in ("J&F-Mean", "J-Recall", "F-Mean", "F-Recall"))
    assert float(global_rows["gt"]["J-Decay"]) == 0
    assert f"{float(global_rows['osvos']['J&F-Mean']):.6f}" in printed

    summary = json.loads((out / "davis_summary.json").read_text())
    assert summary["methods"]["osvos"]["frames"] == 133
    assert set(summary["methods"]["osvos"]["sequences"]) == {"blackswan", "car-shadow", "libby"}
    with Image.open(out / "davis_jf_per_sequence.png") as chart:
        assert chart.format == "PNG" and chart.width > 300
    assert not [path.name for path in out.iterdir() if path.name.startswith(".")]  # no temporary files left


def test_davis_default_output_folder_and_only_present(tmp_path, capsys):
    gt = synthetic_dataset(tmp_path / "gt", {"aa": 6, "bb": 5})
    synthetic_dataset(tmp_path / "pred", {"bb": 5})
    assert main(["eval", "davis", "--pred", str(tmp_path / "pred"), "--gt", str(gt), "--only-present",
                 "--no-plot", "--workers", "1"]) == 0
    out = tmp_path / "pred-eval"
    assert [row["Sequence"] for row in _rows(out / "davis_per_sequence.csv")] == ["bb"]
    assert not (out / "davis_jf_per_sequence.png").exists()
    assert "pred: 1 sequences, 3 frames" in capsys.readouterr().out


@pytest.mark.parametrize("damage, expected", [
    ("missing_frame", "pred/aa/00002.png"),
    ("extra_sequence", "zz"),
    ("size", "size mismatch"),
])
def test_davis_bad_input_is_one_clear_error(tmp_path, capsys, damage, expected):
    gt = synthetic_dataset(tmp_path / "gt", {"aa": 5})
    pred = synthetic_dataset(tmp_path / "pred", {"aa": 5})
    if damage == "missing_frame":
        (pred / "aa" / "00002.png").unlink()
    elif damage == "extra_sequence":
        synthetic_dataset(pred, {"zz": 5})
    else:
        write_sequence(pred, "aa", moving_squares(5, width=50))
    assert main(["eval", "davis", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err  # after the progress bar, if scoring had started
    assert "\nhfan eval: error: " in "\n" + error and expected in error and "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_vsod_end_to_end_on_soft_maps(tmp_path, capsys):
    for sequence, n_frames in (("aa", 6), ("bb", 4)):
        masks = moving_squares(n_frames)
        write_sequence(tmp_path / "gt", sequence, masks)
        write_sequence(tmp_path / "pred", sequence, soft_maps(masks))
    out = tmp_path / "out"
    assert main(["eval", "vsod", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                 "--out", str(out)]) == 0
    assert "S-measure" in capsys.readouterr().out
    expected = evaluate_vsod(tmp_path / "pred", tmp_path / "gt", progress=False).summary()
    (row,) = _rows(out / "vsod_global.csv")
    for key, value in expected.items():
        assert float(row[key]) == pytest.approx(value, abs=1e-9)
    per_sequence = json.loads((out / "vsod_summary.json").read_text())["methods"]["pred"]["sequences"]
    assert set(per_sequence) == {"aa", "bb"}
