import numpy as np
import pytest
import torch
from PIL import Image

from hfan.datasets.train_dataset import FlatTrainDataset
from hfan.io.images import read_class_ids, read_image
from hfan.datasets.layouts import FlatLayout


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _make_split(root, sizes, split="train"):
    """One sample per entry of `sizes`: (frame hw, flow hw, mask hw); frames are red with a grey block."""
    layout = FlatLayout(root)
    for index, (frame_hw, flow_hw, mask_hw) in enumerate(sizes):
        frame = np.zeros((*frame_hw, 3), np.uint8)
        frame[..., 0] = 220
        frame[frame_hw[0] // 3:, frame_hw[1] // 3:] = 128
        flow = np.full((*flow_hw, 3), 200, np.uint8)
        mask = np.zeros(mask_hw, np.uint8)
        mask[mask_hw[0] // 3:, mask_hw[1] // 3:] = 1
        _write(layout.frame_path(split, "cat", index), frame)
        _write(layout.flow_path(split, "cat", index), flow)
        _write(layout.mask_path(split, "cat", index), mask)
    return layout


GOOD = ((48, 64), (48, 64), (48, 64))


def test_items_are_augmented_tensors_and_repeat_cycles_the_samples(tmp_path):
    _make_split(tmp_path, [GOOD] * 3)
    dataset = FlatTrainDataset(tmp_path, "train", repeat=15)
    assert len(dataset) == 45  # RepeatDataset x15
    item = dataset[4]
    assert item["frame"].shape == item["flow"].shape == (3, 512, 512)
    assert item["frame"].dtype == torch.float32 and item["mask"].dtype == torch.int64
    assert item["mask"].shape == (512, 512) and set(item["mask"].unique().tolist()) <= {0, 1}
    for a, b in zip(dataset.load(1), dataset.load(1 + 3)):  # item i is sample i % 3
        np.testing.assert_array_equal(a, b)
    assert not torch.equal(dataset[1]["frame"], dataset[1 + 3]["frame"])  # but drawn differently


def test_items_are_reproducible_per_index_and_epoch(tmp_path):
    _make_split(tmp_path, [GOOD] * 2)
    dataset = FlatTrainDataset(tmp_path, "train", seed=3)
    assert torch.equal(dataset[(1, 0)]["frame"], dataset[1]["frame"])
    assert torch.equal(dataset[(1, 5)]["flow"], FlatTrainDataset(tmp_path, "train", seed=3)[(1, 5)]["flow"])
    assert not torch.equal(dataset[(1, 5)]["flow"], dataset[(1, 6)]["flow"])
    with pytest.raises(IndexError):
        dataset[2]


def test_frames_are_read_as_rgb(tmp_path):
    _make_split(tmp_path, [GOOD])
    frame = read_image(FlatLayout(tmp_path).frame_path("train", "cat", 0))
    assert frame.shape == (48, 64, 3)
    red, green, blue = frame[0, 0].astype(int)  # JPEG of (220, 0, 0): stays clearly red
    assert red > 200 and green < 30 and blue < 30


def test_loader_batches_with_workers(tmp_path):
    _make_split(tmp_path, [GOOD] * 4)
    loader = torch.utils.data.DataLoader(FlatTrainDataset(tmp_path, "train"), batch_size=2, num_workers=2)
    batch = next(iter(loader))
    assert batch["frame"].shape == (2, 3, 512, 512) and batch["mask"].shape == (2, 512, 512)


def test_size_mismatch_on_load_names_the_files(tmp_path):
    layout = _make_split(tmp_path, [GOOD, ((48, 64), (24, 32), (48, 64))])
    dataset = FlatTrainDataset(tmp_path, "train")
    with pytest.raises(ValueError) as error:
        dataset[1]
    message = str(error.value)
    assert str(layout.flow_path("train", "cat", 1)) in message and "32x24" in message
    assert str(layout.frame_path("train", "cat", 1)) in message and "64x48" in message


def test_validate_sizes_reports_every_bad_sample_at_once(tmp_path):
    layout = _make_split(tmp_path, [GOOD, ((48, 64), (24, 32), (48, 64)), GOOD, ((48, 64), (48, 64), (40, 64))])
    dataset = FlatTrainDataset(tmp_path, "train")
    report = tmp_path / "report" / "data_errors.txt"
    with pytest.raises(ValueError) as error:
        dataset.validate_sizes(progress=False, report_path=report)
    message = str(error.value)
    assert "2 of 4 samples" in message
    assert str(layout.flow_path("train", "cat", 1)) in message
    assert str(layout.mask_path("train", "cat", 3)) in message
    assert str(layout.frame_path("train", "cat", 2)) not in message
    assert str(report) in message
    assert len(report.read_text().splitlines()) == 2

    for index in (1, 3):
        _write(layout.flow_path("train", "cat", index), np.zeros((48, 64, 3), np.uint8))
        _write(layout.mask_path("train", "cat", index), np.zeros((48, 64), np.uint8))
    dataset.validate_sizes(progress=False)  # fixed: no error


def test_validate_sizes_flags_colour_masks(tmp_path):
    layout = _make_split(tmp_path, [GOOD])
    mask_path = layout.mask_path("train", "cat", 0)
    _write(mask_path, np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="mask mode RGB"):
        FlatTrainDataset(tmp_path, "train").validate_sizes(progress=False)
    with pytest.raises(ValueError, match="one channel"):
        read_class_ids(mask_path)


def test_masks_must_hold_class_ids(tmp_path):
    path = tmp_path / "m.png"
    mask = np.zeros((8, 8), np.uint8)
    mask[2:5, 2:5] = 255
    _write(path, mask)
    with pytest.raises(ValueError, match="0/255 annotation"):
        read_class_ids(path)
    mask[0, 0] = 1
    _write(path, mask)
    assert read_class_ids(path).max() == 255  # 0/1 with some ignore pixels is valid
    mask[0, 1] = 7
    _write(path, mask)
    with pytest.raises(ValueError, match=r"values \[0, 1, 7, 255\]"):
        read_class_ids(path)


def test_missing_flow_is_reported_at_construction(tmp_path):
    layout = _make_split(tmp_path, [GOOD, GOOD])
    layout.flow_path("train", "cat", 1).unlink()
    with pytest.raises(FileNotFoundError, match="cat_00001.jpg"):
        FlatTrainDataset(tmp_path, "train")
