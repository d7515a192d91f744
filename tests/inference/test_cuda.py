"""The CUDA code paths: fp16 / bf16 autocast, CUDA graphs through torch.compile, RAFT on the GPU, on-device
normalisation, training on a GPU, NCCL. Skipped (with the reason printed by `-ra`) where torch sees no GPU;
`benchmarks/gpu_check.sh` runs them on a GPU machine together with the speed benchmarks.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.shared import PROJECT_ROOT, shared_path
from hfan.config import InferenceConfig
from hfan.presets import get_preset
from hfan.preprocess import normalize_batch
from hfan.inference.predictor import Predictor
from hfan.models import build_model
from hfan.models.checkpoints import load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")
SMALL_SLIDE = InferenceConfig(crop_size=64, stride=40, img_scale=(160, 96))
SOURCE_ROOT = PROJECT_ROOT / "src"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The original code's b0 fixture: model (loaded through the official-key loader), inputs, outputs."""
    fixture = "fixtures/hfan_reference_b0"
    state = torch.load(shared_path(f"{fixture}/state_dict_b0.pt"), weights_only=True)["state_dict"]
    path = tmp_path_factory.mktemp("fixture") / "HFAN-b0-converted.pth"
    torch.save({"state_dict": state}, path)
    inputs = torch.load(shared_path(f"{fixture}/inputs.pt"), weights_only=True)
    expected = torch.load(shared_path(f"{fixture}/outputs_b0_hfan.pt"), weights_only=True)
    return load_model(path), inputs, expected


def _agreement(logits: torch.Tensor, expected: dict) -> float:
    return (logits.argmax(1).cpu().to(torch.uint8) == expected["seg_pred"]).float().mean().item()


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_reference_fixture_on_the_gpu(reference, precision):
    model, inputs, expected = reference
    cpu_logits = Predictor(model, device="cpu", max_batch=1).logits(inputs["frame"], inputs["flow"])
    gpu = Predictor(model, device="cuda", precision=precision)
    logits = gpu.logits(inputs["frame"].cuda(), inputs["flow"].cuda()).cpu()
    assert logits.dtype == torch.float32 and logits.shape == cpu_logits.shape
    # cuDNN convolutions use TF32 by default, autocast halves the mantissa further: masks, not bits, must agree.
    assert _agreement(logits, expected) >= {"fp32": 0.9999, "fp16": 0.999, "bf16": 0.99}[precision]
    assert (logits - cpu_logits).abs().max().item() <= {"fp32": 5e-2, "fp16": 0.1, "bf16": 0.5}[precision]
    model.cpu()


def test_cuda_graphs_compile_once_and_match_eager():
    torch.manual_seed(0)
    model = build_model(get_preset("hfan-b0")).eval().cuda()
    rng = np.random.default_rng(0)
    frames, flows = (list(rng.integers(0, 256, (3, 90, 150, 3), dtype=np.uint8)) for _ in range(2))
    eager = Predictor(model, SMALL_SLIDE, max_batch=8)
    torch._dynamo.reset()
    compiled = Predictor(model, SMALL_SLIDE, max_batch=8, compiled=True)  # inductor, mode reduce-overhead
    for count in (3, 1, 3):  # 24 windows = 3 full chunks; then 8 = one; the graph is reused, not recompiled
        fast, plain = compiled.probabilities(frames[:count], flows[:count]), eager.probabilities(frames[:count], flows[:count])
        assert (fast - plain).abs().max().item() <= 1e-2
        decided = (plain[:, 1] - 0.5).abs() > 1e-2
        assert torch.equal((fast[:, 1] > 0.5)[decided], (plain[:, 1] > 0.5)[decided])
    torch._dynamo.reset()


def test_cli_puts_all_windows_of_a_frame_batch_in_one_forward_on_the_gpu(tmp_path):
    """What `hfan segment --batch-size 16` builds (hfan.cli calls load_predictor with frames_per_batch)."""
    from hfan.inference.predictor import load_predictor
    from hfan.models.checkpoints import save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "b0.pth", build_model("hfan-b0"), get_preset("hfan-b0"))
    predictor = load_predictor(checkpoint, frames_per_batch=16)
    assert predictor.device.type == "cuda" and predictor.max_batch == 48 and predictor.precision == "fp16"
    assert next(predictor.model.parameters()).is_cuda


def test_on_device_normalisation_has_the_cpu_bits():
    images = np.random.default_rng(1).integers(0, 256, (2, 33, 47, 3), dtype=np.uint8)
    assert torch.equal(normalize_batch(images, "cuda").cpu(), normalize_batch(images))


def test_raft_on_the_gpu_matches_the_cpu():
    from hfan.flow import build_flow_estimator

    torch.manual_seed(0)
    gpu = build_flow_estimator("raft_small", weights=None, device="cuda", num_flow_updates=4)
    cpu = build_flow_estimator("raft_small", weights=None, device="cpu", num_flow_updates=4)
    cpu.model.load_state_dict(gpu.model.state_dict())
    rng = np.random.default_rng(2)
    first = rng.integers(0, 256, (130, 170, 3), dtype=np.uint8)
    second = np.roll(first, 3, axis=1)
    flow_gpu, flow_cpu = gpu(first, second), cpu(first, second)
    assert flow_gpu.shape == (130, 170, 2) and flow_gpu.dtype == np.float32
    assert np.abs(flow_gpu - flow_cpu).max() <= 1e-2 * max(1.0, np.abs(flow_cpu).max())


def test_segment_video_on_the_gpu_with_and_without_prefetching():
    from hfan.segment import segment_video

    torch.manual_seed(0)
    model = build_model(get_preset("hfan-b0")).eval().cuda()
    predictor = Predictor(model, SMALL_SLIDE)
    assert predictor.precision == "fp16", "fp16 autocast is the CUDA default, as the official test"
    frames = list(np.random.default_rng(3).integers(0, 256, (5, 90, 150, 3), dtype=np.uint8))
    plain = list(segment_video(frames, predictor, batch_size=2, prefetch=False))
    ahead = list(segment_video(frames, predictor, batch_size=2, prefetch=True))
    for a, b in zip(plain, ahead, strict=True):
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.probability, b.probability)


def test_training_steps_on_the_gpu(tmp_path):
    from helpers.train_data import tiny_config, write_flat_split

    from hfan.train.loop import train

    write_flat_split(tmp_path / "data", videos=2, frames=4)
    result = train(tiny_config(tmp_path / "data", "iterations=2"), tmp_path / "run", device="cuda", progress=False)
    assert next(result.model.parameters()).is_cuda
    assert (tmp_path / "run" / "iter_2.pth").is_file()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL training needs 2 GPUs (one per rank)")
def test_torchrun_trains_over_nccl(tmp_path):
    from helpers.train_data import write_flat_split

    write_flat_split(tmp_path / "data", videos=2, frames=3)
    options = [f"data.root={tmp_path / 'data'}", "data.val_root=none", "data.batch_per_gpu=2",
               "data.workers_per_gpu=0", "data.augment.crop_size=64,64", "data.augment.img_scale=128,64",
               "iterations=2", "tensorboard=false"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SOURCE_ROOT), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hfan.train",
         "hfan-b0-160k", "--work-dir", str(tmp_path / "run"), "--device", "cuda", "--no-progress",
         "--options", *options], env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "run" / "iter_2.pth").is_file()
