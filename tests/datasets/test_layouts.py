import numpy as np
import pytest
from PIL import Image

from hfan.datasets.layouts import FlatLayout, flat_stem, parse_flat_stem


def test_flat_names_round_trip():
    assert flat_stem("car-shadow", 7) == "car-shadow_00007"
    assert parse_flat_stem("car-shadow_00007") == ("car-shadow", 7)
    assert parse_flat_stem("a_b_00012") == ("a_b", 12)
    with pytest.raises(ValueError, match="5-digit"):
        parse_flat_stem("blackswan_7")


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_samples_sorted_and_missing_files_named(tmp_path):
    layout = FlatLayout(tmp_path)
    for video, index in [("b", 1), ("a", 2), ("a", 0)]:
        _write(layout.frame_path("train", video, index), np.zeros((4, 4, 3), np.uint8))
        _write(layout.flow_path("train", video, index), np.zeros((4, 4, 3), np.uint8))
        _write(layout.mask_path("train", video, index), np.zeros((4, 4), np.uint8))
    assert [s.stem for s in layout.samples("train")] == ["a_00000", "a_00002", "b_00001"]
    layout.flow_path("train", "a", 2).unlink()
    with pytest.raises(FileNotFoundError, match="a_00002.jpg"):
        layout.samples("train")
    with pytest.raises(FileNotFoundError, match="hfan prepare"):
        layout.samples("val")


def test_samples_ignore_hidden_temporary_files(tmp_path):
    layout = FlatLayout(tmp_path)
    _write(layout.frame_path("val", "a", 0), np.zeros((4, 4, 3), np.uint8))
    _write(layout.flow_path("val", "a", 0), np.zeros((4, 4, 3), np.uint8))
    # What hfan.files.atomic_path leaves behind when a process is killed mid-write.
    _write(layout.frame_path("val", "a", 1).with_name(".a_00001.tmp-12-0a1b2c3d.jpg"), np.zeros((4, 4, 3), np.uint8))
    assert [s.stem for s in layout.samples("val", require_masks=False)] == ["a_00000"]
