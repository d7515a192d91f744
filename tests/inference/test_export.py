import pytest
import torch

from hfan.cli import main
from hfan.presets import get_preset
from hfan.inference.export import compare_with_onnxruntime, export_onnx
from hfan.models import build_model

pytest.importorskip("onnxruntime")


def test_onnx_matches_pytorch_with_a_dynamic_batch(tmp_path):
    model = build_model(get_preset("hfan-b0")).eval()
    path = export_onnx(model, tmp_path / "b0.onnx", 64, 96)
    assert [p.name for p in tmp_path.iterdir()] == ["b0.onnx"], "no temporary file left behind"
    frames, flows = torch.randn(3, 3, 64, 96), torch.randn(3, 3, 64, 96)
    assert compare_with_onnxruntime(model, path, frames, flows) <= 1e-4


def test_export_cli_and_its_errors(tmp_path, capsys):
    assert main(["export", "onnx", "--model", "hfan-b0", "--random-weights", "--options",
                 "decode_head.select_method=fat", "--out", str(tmp_path / "fat.onnx"), "--size", "64x64"]) == 0
    assert "matches PyTorch" in capsys.readouterr().out
    assert main(["export", "onnx", "--model", "hfan-b0", "--random-weights", "--out", str(tmp_path / "x.onnx"),
                 "--size", "60x64"]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    # random weights only when asked in so many words
    assert main(["export", "onnx", "--model", "hfan-b0", "--out", str(tmp_path / "y.onnx"), "--size", "64x64"]) == 2
    assert "--random-weights" in capsys.readouterr().err and not (tmp_path / "y.onnx").exists()


def test_export_onnx_defaults_to_the_packaged_model(tmp_path, capsys):
    assert main(["export", "onnx", "--out", str(tmp_path / "default.onnx"), "--size", "128x128"]) == 0
    assert "matches PyTorch" in capsys.readouterr().out and (tmp_path / "default.onnx").is_file()
