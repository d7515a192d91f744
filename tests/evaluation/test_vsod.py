import warnings

import cv2
import py_sod_metrics as sod
import pytest
from helpers.shared import shared_path
from helpers.mask_folders import moving_squares, soft_maps, write_sequence

from hfan.evaluation import evaluate_vsod


def _direct(pred_paths, gt_paths) -> dict[str, float]:
    """pysodmetrics' classic classes called directly on the frames, as the README of pysodmetrics shows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Fmeasure announces its successor FmeasureV2
        s_measure, e_measure, f_measure, mae = sod.Smeasure(), sod.Emeasure(), sod.Fmeasure(), sod.MAE()
    for pred_path, gt_path in zip(pred_paths, gt_paths):
        pred = cv2.imread(str(pred_path), cv2.IMREAD_GRAYSCALE)
        gt = cv2.imread(str(gt_path), cv2.IMREAD_GRAYSCALE)
        for metric in (s_measure, e_measure, f_measure, mae):
            metric.step(pred=pred, gt=gt)
    em, fm = e_measure.get_results()["em"], f_measure.get_results()["fm"]
    return {"S-measure": s_measure.get_results()["sm"], "maxE": em["curve"].max(), "meanE": em["curve"].mean(),
            "adpE": em["adp"], "maxF": fm["curve"].max(), "meanF": fm["curve"].mean(), "adpF": fm["adp"],
            "MAE": mae.get_results()["mae"]}


def _assert_close(ours: dict, expected: dict) -> None:
    assert ours.keys() == expected.keys()
    for key in expected:
        assert ours[key] == pytest.approx(expected[key], abs=1e-12), key


def test_real_sequence_equals_pysodmetrics_on_the_scored_frames(tmp_path):
    mini = shared_path("data/davis16_mini")
    # The first 12 frames of car-shadow, linked into a new sequence folder (10 of them are scored).
    gt_paths = sorted((mini / "Annotations" / "480p" / "car-shadow").glob("*.png"))[:12]
    pred_paths = [mini / "predictions" / "osvos_bin" / "car-shadow" / path.name for path in gt_paths]
    for kind, paths in (("gt", gt_paths), ("pred", pred_paths)):
        (tmp_path / kind / "car-shadow").mkdir(parents=True)
        for path in paths:
            (tmp_path / kind / "car-shadow" / path.name).symlink_to(path)
    result = evaluate_vsod(tmp_path / "pred", tmp_path / "gt", progress=False)
    assert result.n_frames == 10
    _assert_close(result.summary(), _direct(pred_paths[1:-1], gt_paths[1:-1]))


@pytest.fixture
def soft_dataset(tmp_path):
    """Two sequences of soft 8-bit maps; their first and last maps are inverted (wrong on purpose)."""
    gt_paths, pred_paths = {}, {}
    for sequence, n_frames, seed in (("long", 9, 1), ("short", 4, 2)):
        masks = moving_squares(n_frames)
        maps = soft_maps(masks, seed)
        maps[0], maps[-1] = 255 - maps[0], 255 - maps[-1]
        gt_paths[sequence] = write_sequence(tmp_path / "gt", sequence, masks)
        pred_paths[sequence] = write_sequence(tmp_path / "pred", sequence, maps)
    return tmp_path, gt_paths, pred_paths


def test_soft_maps_grouped_per_sequence_without_first_and_last_frames(soft_dataset):
    root, gt_paths, pred_paths = soft_dataset
    result = evaluate_vsod(root / "pred", root / "gt", workers=2, progress=False)
    per_sequence = {sequence: _direct(pred_paths[sequence][1:-1], gt_paths[sequence][1:-1])
                    for sequence in ("long", "short")}
    for scores in result.sequences:
        _assert_close(scores.summary(), per_sequence[scores.name])
    summary = result.summary()
    # Sequence means, not frame-pooled means: the 2 scored frames of `short` weigh as much as the 7 of `long`.
    assert summary["S-measure"] == pytest.approx((per_sequence["long"]["S-measure"]
                                                  + per_sequence["short"]["S-measure"]) / 2, abs=1e-12)
    assert summary["MAE"] == pytest.approx((per_sequence["long"]["MAE"] + per_sequence["short"]["MAE"]) / 2,
                                           abs=1e-12)
    pooled = _direct(pred_paths["long"][1:-1] + pred_paths["short"][1:-1],
                     gt_paths["long"][1:-1] + gt_paths["short"][1:-1])
    assert summary["S-measure"] != pytest.approx(pooled["S-measure"], abs=1e-9)
    # Max and mean F come from the sequence-averaged curve: at most the mean of the per-sequence maxima.
    assert summary["maxF"] <= (per_sequence["long"]["maxF"] + per_sequence["short"]["maxF"]) / 2 + 1e-12
    # The inverted first and last maps would ruin the scores if they were counted.
    with_ends = _direct(pred_paths["long"], gt_paths["long"])
    assert per_sequence["long"]["S-measure"] > 0.8 > with_ends["S-measure"] + 0.05


def test_binary_masks_score_as_perfect_saliency(tmp_path):
    masks = moving_squares(5)
    write_sequence(tmp_path / "gt", "seq", masks)
    write_sequence(tmp_path / "pred", "seq", masks)
    summary = evaluate_vsod(tmp_path / "pred", tmp_path / "gt", progress=False).summary()
    assert summary["S-measure"] == pytest.approx(1) and summary["MAE"] == 0
    assert summary["maxF"] == pytest.approx(1) and summary["adpF"] == pytest.approx(1)
