import csv
import glob

import numpy as np
import pytest
from helpers.shared import shared_path
from helpers.mask_folders import moving_squares, synthetic_dataset, write_sequence
from PIL import Image

from hfan.evaluation import evaluate_davis, read_mask
from hfan.evaluation.davis import boundary_map, boundary_radius, db_statistics, disk, f_measure, jaccard
from hfan.evaluation.frames import collect_sequences
from hfan.datasets.davis import read_sequence_names


@pytest.fixture(scope="module")
def mini():
    return shared_path("data/davis16_mini")


@pytest.fixture(scope="module")
def osvos_result(mini):
    return evaluate_davis(mini / "predictions" / "osvos_bin", mini, workers=2, progress=False)


def _reference(mini) -> dict[tuple[str, str], tuple[float, float]]:
    with open(mini / "reference" / "osvos_bin_perframe_official.csv") as file:
        return {(row["sequence"], row["frame"]): (float(row["J"]), float(row["F"])) for row in csv.DictReader(file)}


def test_per_frame_j_and_f_equal_the_official_values(mini, osvos_result):
    reference = _reference(mini)
    ours = {(seq.name, frame): (j, f) for seq in osvos_result.sequences
            for frame, j, f in zip(seq.frames, seq.j, seq.f)}
    assert ours.keys() == reference.keys()  # the same 133 frames: first and last of each sequence excluded
    for key, (j, f) in reference.items():
        assert ours[key][0] == pytest.approx(j, abs=1e-6), key
        assert ours[key][1] == pytest.approx(f, abs=1e-6), key


def test_sequence_statistics_follow_from_the_official_per_frame_values(mini, osvos_result):
    reference = _reference(mini)
    for seq in osvos_result.sequences:
        official_j = np.array([reference[(seq.name, frame)][0] for frame in seq.frames])
        official_f = np.array([reference[(seq.name, frame)][1] for frame in seq.frames])
        for ours, official in ((seq.j_stats, db_statistics(official_j)), (seq.f_stats, db_statistics(official_f))):
            assert ours.mean == pytest.approx(official.mean, abs=1e-6)
            assert ours.recall == official.recall
            assert ours.decay == pytest.approx(official.decay, abs=1e-6)
    summary = osvos_result.summary()
    assert summary["J-Mean"] == pytest.approx(np.mean([seq.j_stats.mean for seq in osvos_result.sequences]))
    assert summary["J&F-Mean"] == pytest.approx((summary["J-Mean"] + summary["F-Mean"]) / 2)


def test_parallel_and_serial_runs_give_identical_numbers(mini, osvos_result):
    serial = evaluate_davis(mini / "predictions" / "osvos_bin", mini, sequences=["libby"], workers=1, progress=False)
    parallel = {seq.name: seq for seq in osvos_result.sequences}["libby"]
    np.testing.assert_array_equal(serial.sequences[0].j, parallel.j)
    np.testing.assert_array_equal(serial.sequences[0].f, parallel.f)


def _official_matlab_results(path):
    import h5py

    with h5py.File(path, "r") as file:
        refs = file["raw_ev"]
        return [{key: np.array(file[refs[key][index, 0]]).ravel() for key in ("raw", "mean", "recall", "decay")}
                for index in range(refs["raw"].shape[0])]


def test_statistics_reproduce_the_official_results_of_21_methods():
    folder = shared_path("data/davis16_official_eval")
    paths = sorted(glob.glob(str(folder / "*-[JF]-val-2016-single-480p.mat")))
    assert len(paths) == 42  # 21 methods x {J, F}
    means = {}
    for path in paths:
        sequences = _official_matlab_results(path)
        assert len(sequences) == 20
        for official in sequences:
            ours = db_statistics(official["raw"])
            assert ours.mean == pytest.approx(official["mean"][0], abs=1e-12)
            assert ours.recall == pytest.approx(official["recall"][0], abs=1e-12)
            assert ours.decay == pytest.approx(official["decay"][0], abs=1e-12)
        name = path.rsplit("/", 1)[1].rsplit("-val", 1)[0]
        means[name] = np.mean([db_statistics(official["raw"]).mean for official in sequences])
    # Averaging over sequences gives the DAVIS-2016 paper table.
    assert round(means["fst-J"], 3) == 0.558 and round(means["fst-F"], 3) == 0.511
    assert round(means["nlc-J"], 3) == 0.551
    assert round(means["osvos-J"], 3) == 0.798 and round(means["osvos-F"], 3) == 0.806


def test_ground_truth_against_itself_scores_perfectly(mini):
    result = evaluate_davis(mini / "Annotations" / "480p", mini, workers=2, progress=False)
    assert result.n_frames == 133
    assert result.summary() == {"J&F-Mean": 1.0, "J-Mean": 1.0, "J-Recall": 1.0, "J-Decay": 0.0,
                                "F-Mean": 1.0, "F-Recall": 1.0, "F-Decay": 0.0}


def test_empty_prediction_scores_zero(mini, tmp_path):
    for sequence in ("car-shadow", "libby"):
        shape = read_mask(next((mini / "Annotations" / "480p" / sequence).glob("*.png"))).shape
        n_frames = len(list((mini / "Annotations" / "480p" / sequence).glob("*.png")))
        write_sequence(tmp_path, sequence, [np.zeros(shape, dtype=bool)] * n_frames)
    summary = evaluate_davis(tmp_path, mini, only_present=True, progress=False).summary()
    assert summary["J-Mean"] == 0 and summary["F-Mean"] == 0
    assert summary["J-Recall"] == 0 and summary["F-Recall"] == 0 and summary["J-Decay"] == 0


def test_special_cases_of_j_and_f():
    empty, square = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
    square[5:12, 8:20] = True
    assert jaccard(empty, empty) == 1 and f_measure(empty, empty) == 1
    assert jaccard(square, empty) == 0 and f_measure(square, empty) == 0  # nothing predicted
    assert f_measure(empty, square) == 0  # prediction where the ground truth is empty
    shifted = np.roll(square, 1, axis=1)
    assert jaccard(square, shifted) == pytest.approx(11 / 13)  # 7x11 shared of 7x13
    assert f_measure(square, shifted) == 1  # a 1-pixel shift is within the 1-pixel tolerance at this size


def _full_frame_f(gt, pred):
    """The official f_measure dilating the whole frame (both boundaries non-empty)."""
    import cv2

    kernel = disk(boundary_radius(gt.shape))
    gt_boundary, pred_boundary = boundary_map(gt), boundary_map(pred)
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel) > 0
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel) > 0
    precision = np.sum(pred_boundary & gt_dilated) / np.sum(pred_boundary)
    recall = np.sum(gt_boundary & pred_dilated) / np.sum(gt_boundary)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _random_rectangles(rng, shape, count):
    mask = np.zeros(shape, bool)
    for _ in range(count):
        top, left = rng.integers(-10, shape[0]), rng.integers(-10, shape[1])  # some leave the image
        mask[max(top, 0):top + rng.integers(3, 40), max(left, 0):left + rng.integers(3, 60)] = True
    return mask


def test_boundary_box_gives_the_full_frame_result_also_at_image_borders():
    rng = np.random.default_rng(0)
    for _ in range(60):
        gt = _random_rectangles(rng, (120, 200), rng.integers(1, 3))
        pred = np.roll(gt, tuple(rng.integers(-4, 5, 2)), axis=(0, 1)) | _random_rectangles(rng, gt.shape, 1)
        if gt.any() and boundary_map(gt).any() and boundary_map(pred).any():
            assert f_measure(gt, pred) == _full_frame_f(gt, pred)


def test_boundary_map_is_the_official_seg2bmap():
    seg = np.zeros((4, 4), bool)
    seg[1:3, 1:3] = True
    # Boundaries sit half a pixel towards the origin; the last row and column follow their own rule.
    expected = np.array([[1, 1, 1, 0], [1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(boundary_map(seg), expected)


def test_disk_and_tolerance_match_the_official_definitions():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert disk(8).shape == (17, 17) and disk(8).sum() == 197  # lattice points with x^2 + y^2 <= 64
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.6)


def test_decay_bins_are_right_past_256_frames():
    # The official uint8 bin edges wrap past 256 frames; first quarter 1, rest 0 must give decay 1.
    values = np.r_[np.ones(101), np.zeros(299)]
    assert db_statistics(values).decay == 1.0
    assert db_statistics(values).recall == pytest.approx(101 / 400)


def test_read_mask_accepts_binary_soft_palette_and_colour_pngs(tmp_path):
    truth = np.zeros((6, 8), bool)
    truth[2:5, 3:7] = True
    images = {
        "zero_one": Image.fromarray(truth.astype(np.uint8)),
        "zero_255": Image.fromarray(truth.astype(np.uint8) * 255),
        "soft": Image.fromarray(np.where(truth, 37, 0).astype(np.uint8)),
        "rgb": Image.fromarray(np.dstack([np.zeros_like(truth), truth, np.zeros_like(truth)]).astype(np.uint8) * 200),
        "rgba": Image.fromarray(np.dstack([truth * 255, truth * 0, truth * 0, np.full(truth.shape, 255)])
                                .astype(np.uint8)),
        "grey_alpha": Image.fromarray(np.dstack([truth * 9, np.full(truth.shape, 255)]).astype(np.uint8), "LA"),
        "sixteen_bit": Image.fromarray(truth.astype(np.uint16) * 1000),
    }
    palette = Image.fromarray(truth.astype(np.uint8) * 2, mode="L").convert("P")
    palette.putpalette([40, 40, 40, 0, 0, 0, 128, 0, 0] + [0] * 759)  # index 0 is grey: indices count, not colours
    images["palette"] = palette
    for name, image in images.items():
        path = tmp_path / f"{name}.png"
        image.save(path)
        np.testing.assert_array_equal(read_mask(path), truth, err_msg=name)


def test_missing_frame_missing_and_extra_sequences_are_named_in_one_error(tmp_path):
    gt = synthetic_dataset(tmp_path / "gt", {"aa": 6, "bb": 5, "cc": 4})
    pred = synthetic_dataset(tmp_path / "pred", {"aa": 6, "bb": 5, "zz": 4})
    (pred / "aa" / "00003.png").unlink()
    (pred / "bb" / "00000.png").unlink()  # first frame is not scored: not needed
    with pytest.raises(FileNotFoundError) as error:
        collect_sequences(pred, gt)
    message = str(error.value)
    assert "aa/00003.png" in message and "00000.png" not in message
    assert "zz" in message and "no ground truth" in message
    assert "cc" in message and "--only-present" in message


def test_only_present_and_sequence_lists_select_sequences(tmp_path):
    gt = synthetic_dataset(tmp_path / "gt", {"aa": 6, "bb": 5, "cc": 4})
    pred = synthetic_dataset(tmp_path / "pred", {"aa": 6, "bb": 5}, shift=1)
    result = evaluate_davis(pred, gt, only_present=True, progress=False)
    assert [seq.name for seq in result.sequences] == ["aa", "bb"]
    assert [len(seq.frames) for seq in result.sequences] == [4, 3]
    assert 0.5 < result.summary()["J-Mean"] < 1
    names_file = tmp_path / "val.txt"
    names_file.write_text("/JPEGImages/480p/bb/00000.jpg /Annotations/480p/bb/00000.png\n"
                          "/JPEGImages/480p/bb/00001.jpg /Annotations/480p/bb/00001.png\n")
    assert read_sequence_names([str(names_file), "aa"]) == ["bb", "aa"]
    only_bb = evaluate_davis(pred, gt, sequences=read_sequence_names([str(names_file)]), progress=False)
    assert [seq.name for seq in only_bb.sequences] == ["bb"]


def test_size_mismatch_names_both_files(tmp_path):
    gt = synthetic_dataset(tmp_path / "gt", {"aa": 4})
    write_sequence(tmp_path / "pred", "aa", moving_squares(4, height=40))
    with pytest.raises(ValueError, match=r"size mismatch: .*pred/aa/00001.png is 64x40 but .*gt/aa/00001.png is 64x48"):
        evaluate_davis(tmp_path / "pred", gt, workers=2, progress=False)


def test_sparse_ground_truth_scores_only_annotated_frames(tmp_path):
    # Long-Videos style: ground truth for a few frames, predictions for all of them.
    masks = moving_squares(12)
    write_sequence(tmp_path / "pred", "long", masks)
    sparse = tmp_path / "gt" / "long"
    sparse.mkdir(parents=True)
    for index in (0, 4, 8, 11):
        Image.fromarray(masks[index].astype(np.uint8) * 255).save(sparse / f"{index:05d}.png")
    result = evaluate_davis(tmp_path / "pred", tmp_path / "gt", progress=False)
    assert result.sequences[0].frames == ("00004", "00008")
    assert result.summary()["J&F-Mean"] == 1.0
