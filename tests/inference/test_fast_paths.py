"""Every fast path computes what the faithful path (one window per forward, eager PyTorch) computes."""
from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.shared import shared_path
from hfan.config import InferenceConfig
from hfan.presets import get_preset
from hfan.models.fusion import ConvModule
from hfan.models.mit import Attention, MixFFN
from hfan.models.onednn import set_fused_kernels
from hfan.inference.predictor import Predictor
from hfan.models import build_model
from hfan.models.checkpoints import load_model

# Small windows keep the tests quick; 90x150 frames -> 96x160 -> 2x4 windows of 64x64 at stride 40.
SMALL_SLIDE = InferenceConfig(crop_size=64, stride=40, img_scale=(160, 96))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(get_preset("hfan-b0")).eval()


@pytest.fixture(scope="module")
def pairs():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 3, 90, 150, 3), dtype=np.uint8)
    return list(images[0]), list(images[1])


def _faithful(model, config=None) -> Predictor:
    """The original's computation: one window per forward, the decoder's concatenation (no fold), Mix-FFN's three
    operators."""
    original = copy.deepcopy(model)
    original.decode_head.fold_linear_fuse = False
    set_fused_kernels(original, False)
    return Predictor(original, config, max_batch=1)


def _assert_same_prediction(fast: Predictor, faithful: Predictor, frames, flows) -> None:
    """Logits within 1e-4 at the network input size; masks equal wherever the pixel is not a near-tie."""
    tensors = [faithful._prepare(images, faithful.config.img_scale) for images in (frames, flows)]
    assert (fast.logits(*tensors) - faithful.logits(*tensors)).abs().max().item() <= 1e-4
    fast_probs, faithful_probs = fast.probabilities(frames, flows), faithful.probabilities(frames, flows)
    decided = (faithful_probs[:, 1] - 0.5).abs() > 1e-4
    assert decided.float().mean() > 0.99
    assert torch.equal((fast_probs[:, 1] > 0.5)[decided], (faithful_probs[:, 1] > 0.5)[decided])


def test_batched_windows_equal_the_faithful_path(model, pairs):
    _assert_same_prediction(Predictor(model, SMALL_SLIDE, max_batch=5), _faithful(model, SMALL_SLIDE),
                            *pairs)


def test_the_default_path_equals_the_faithful_path(model, pairs):
    """What `Predictor(model)`, `segment_video` and the commands run: batched windows, the decoder fold and the
    fused oneDNN kernels of MiT and of the fusion modules."""
    default = Predictor(model, SMALL_SLIDE)
    assert default.max_batch == 8 and model.decode_head.fold_linear_fuse
    fusable = [layer for layer in model.modules() if isinstance(layer, (Attention, MixFFN, ConvModule))]
    assert {type(layer) for layer in fusable} == {Attention, MixFFN, ConvModule}
    assert all(layer.fused_kernels for layer in fusable)
    _assert_same_prediction(default, _faithful(model, SMALL_SLIDE), *pairs)


def test_onnx_backend_equals_the_faithful_path(model, pairs):
    pytest.importorskip("onnxruntime")
    onnx = Predictor(model, SMALL_SLIDE, backend="onnx", max_batch=4)
    _assert_same_prediction(onnx, _faithful(model, SMALL_SLIDE), *pairs)
    assert list(onnx.network.sessions) == [(64, 64)], "one exported graph serves every window"


def test_onnx_backend_serves_the_flow_only_default_model(pairs):
    """The exporter drops the frame input of a `select_method=fw` model; the backend feeds what the graph reads."""
    pytest.importorskip("onnxruntime")
    default = load_model("default")
    onnx = Predictor(default, SMALL_SLIDE, backend="onnx", max_batch=4)
    (only_input,) = onnx.network.session(64, 64).get_inputs()
    assert only_input.name == "flow"
    _assert_same_prediction(onnx, _faithful(default, SMALL_SLIDE), *pairs)


def test_compiled_path_pads_chunks_to_one_shape_and_compiles_once(model, pairs):
    graphs = []

    def counting_backend(graph_module, example_inputs):  # dynamo hands us each graph it captures
        graphs.append(tuple(tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor))[:2])
        return graph_module.forward

    torch._dynamo.reset()
    compiled = Predictor(model, SMALL_SLIDE, max_batch=3, compiled=True, compile_backend=counting_backend)
    frames, flows = pairs
    _assert_same_prediction(compiled, _faithful(model, SMALL_SLIDE), frames, flows)
    compiled.probabilities(frames[:1], flows[:1])  # 8 windows: chunks of 3, 3 and 2 padded to 3
    assert len(graphs) == 1 and graphs[0][0] == (3, 3, 64, 64), f"recompiled: {graphs}"
    torch._dynamo.reset()


def test_fast_paths_reproduce_the_original_code_on_the_reference_fixture(tmp_path):
    """The reference-fixture check of tests/models/test_models.py, through each fast path (one 512x512 window)."""
    pytest.importorskip("onnxruntime")
    reference = "fixtures/hfan_reference_b0"
    state = torch.load(shared_path(f"{reference}/state_dict_b0.pt"), weights_only=True)["state_dict"]
    torch.save({"state_dict": state}, tmp_path / "HFAN-b0-converted.pth")
    model = load_model(tmp_path / "HFAN-b0-converted.pth")
    inputs = torch.load(shared_path(f"{reference}/inputs.pt"), weights_only=True)
    expected = torch.load(shared_path(f"{reference}/outputs_b0_hfan.pt"), weights_only=True)
    faithful = _faithful(model).logits(inputs["frame"], inputs["flow"])
    for fast in (Predictor(model), Predictor(model, backend="onnx"),
                 Predictor(model, compiled=True, compile_backend="eager")):
        logits = fast.logits(inputs["frame"], inputs["flow"])
        assert (logits - faithful).abs().max().item() <= 1e-4, fast.backend
        agreement = (logits.argmax(1).to(torch.uint8) == expected["seg_pred"]).float().mean().item()
        assert agreement >= 0.9999
    torch._dynamo.reset()


def test_bad_backend_combinations_are_refused(model):
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        Predictor(model, backend="tensorrt")
    with pytest.raises(ValueError, match="backend onnx runs fp32 on the CPU"):
        Predictor(model, backend="onnx", compiled=True)
    with pytest.raises(ValueError, match="backend onnx runs fp32 on the CPU"):
        Predictor(model, backend="onnx", precision="bf16")
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        Predictor(model, max_batch=0)


PAGE_FAULTS_SCRIPT = """
import ctypes, resource, sys
from hfan.inference.malloc import tune_malloc
if sys.argv[1] == "tuned":
    assert tune_malloc()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
size = 64 << 20  # a large activation; every page of a fresh mmap'ed block faults on first touch
def use_a_block():
    block = libc.malloc(ctypes.c_size_t(size))
    ctypes.memset(block, 1, size)
    libc.free(ctypes.c_void_p(block))
use_a_block()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    use_a_block()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_malloc_tuning_stops_page_faults_on_reused_memory():
    faults = {}
    for setting in ("default", "tuned"):
        result = subprocess.run([sys.executable, "-c", PAGE_FAULTS_SCRIPT, setting], capture_output=True, text=True,
                                check=True)
        faults[setting] = int(result.stdout)
    assert faults["default"] > 10 * 16384 * 0.9, faults  # 16384 pages of 4 KiB per 64 MiB block, faulted anew
    assert faults["tuned"] < 1000, faults


@pytest.fixture
def malloc_calls(monkeypatch):
    """hfan.inference.malloc.tune_malloc replaced by a recorder (the real one changes this process's allocator)."""
    from hfan.inference import malloc

    calls = []
    monkeypatch.setattr(malloc, "tune_malloc", lambda: calls.append(True) or True)
    return calls


@pytest.fixture(scope="module")
def b0_checkpoint(tmp_path_factory):
    from hfan.models.checkpoints import save_checkpoint

    return save_checkpoint(tmp_path_factory.mktemp("weights") / "b0.pth", build_model("hfan-b0"), get_preset("hfan-b0"))


def test_predictors_tune_malloc_by_default_and_not_when_told(malloc_calls, b0_checkpoint):
    from hfan.inference.predictor import load_predictor

    predictor = load_predictor(b0_checkpoint, backend="onnx")
    assert malloc_calls == [True] and predictor.allocator_tuned and predictor.backend == "onnx"
    assert predictor.max_batch == 8, "the CPU's best window batch (benchmarks/model_speed.py)"
    assert not load_predictor(b0_checkpoint, backend="onnx", tune_allocator=False).allocator_tuned
    assert malloc_calls == [True]
    # The Python API's own constructor: the same default, the same way out.
    assert Predictor(predictor.model).allocator_tuned and malloc_calls == [True, True]
    assert not Predictor(predictor.model, tune_allocator=False).allocator_tuned and malloc_calls == [True, True]


def test_cli_inference_tunes_malloc_unless_told_not_to(malloc_calls, b0_checkpoint, monkeypatch, tmp_path):
    from hfan import segment
    from hfan.cli import main
    from hfan.io.images import write_image
    from hfan.streams import Timings

    built = []
    monkeypatch.setattr(segment, "segment_to_folder",
                        lambda source, out, predictor, *args, **kwargs: built.append(predictor) or Timings())
    clip = tmp_path / "clip"
    for index in range(2):
        write_image(clip / f"{index}.jpg", np.full((32, 48, 3), 40 * index, np.uint8))
    base = ["segment", str(clip), "--checkpoint", str(b0_checkpoint), "--backend", "onnx"]
    assert main(base) == 0
    assert malloc_calls == [True] and built[0].backend == "onnx"
    assert built[0].max_batch == 8, "the CPU's best window batch (benchmarks/model_speed.py)"
    assert main(base + ["--no-malloc-tuning"]) == 0
    assert malloc_calls == [True] and len(built) == 2


def test_flow_settings_from_options_take_each_methods_own_options():
    from hfan.datasets.prepare import FlowSettings

    raft = FlowSettings.from_options("raft_small", True, "affine", dis_preset="fast", raft_weights="C_T_V2",
                                     raft_iters=6, batch_size=3, device="cpu")
    assert (raft.name, raft.save_raw, raft.camera_motion) == ("raft_small", True, "affine")
    assert dict(raft.options) == {"weights": "C_T_V2", "num_flow_updates": 6, "batch_size": 3, "device": "cpu"}
    dis = FlowSettings.from_options("dis", dis_preset="fast", raft_iters=6)
    assert dis == FlowSettings.of("dis", preset="fast")
    assert FlowSettings.from_options("farneback", dis_preset="fast").options == ()


def test_cli_flow_preparation_tunes_malloc_unless_told_not_to(malloc_calls, monkeypatch):
    from hfan.cli import main
    from hfan.datasets import prepare

    settings = []
    monkeypatch.setattr(prepare, "prepare_video", lambda source, out, flow, *args: settings.append(flow) or "done")
    base = ["prepare", "video", "clip.mp4", "--out", "prepared", "--flow", "raft_small", "--flow-batch-size", "2"]
    assert main(base) == 0
    assert malloc_calls == [True] and settings[0].name == "raft_small"
    assert settings[0] == prepare.FlowSettings.from_options("raft_small", batch_size=2)
    assert main(base + ["--no-malloc-tuning"]) == 0
    assert malloc_calls == [True] and len(settings) == 2
