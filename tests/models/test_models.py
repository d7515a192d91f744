"""The model against the original code's outputs, the official key lists, and the loader's errors."""
from __future__ import annotations

import copy
import re

import pytest
import torch

from helpers.shared import shared_path
from hfan.config import SELECT_METHODS, apply_overrides
from hfan.presets import get_preset
from hfan.inference.predictor import Predictor
from hfan.models import build_model
from hfan.models.checkpoints import load_model, official_to_ours, ours_to_official
from hfan.models import onednn
from hfan.models.fusion import ConvModule
from hfan.models.mit import Block, MixFFN
from hfan.models.onednn import set_fused_kernels

REFERENCE = "fixtures/hfan_reference_b0"


def _official_state_for(method: str) -> dict[str, torch.Tensor]:
    """The fixture's hfan state dict mapped to one select_method exactly as its README says."""
    state = torch.load(shared_path(f"{REFERENCE}/state_dict_b0.pt"), weights_only=True)["state_dict"]
    mapped = {}
    for key, value in state.items():
        match = re.match(r"decode_head\.hfan(\d)\.(\w+)\.", key)
        if match is None:
            mapped[key] = value
        elif method == "hfan":
            mapped[key] = value
        elif method == "fam" and match.group(2) in ("poc", "object_pred"):
            mapped[key.replace(".hfan", ".fam")] = value
        elif method == "fat" and match.group(2) in ("ca_layers", "pa_layers"):
            mapped[key.replace(".hfan", ".fat")] = value
    return mapped


@pytest.fixture(scope="module")
def reference_inputs():
    return torch.load(shared_path(f"{REFERENCE}/inputs.pt"), weights_only=True)


# The official ablation files are named im-/fw-/baseline-/FAM-/FAT-converted.pth.
FILE_NAMES = {"im": "im-converted.pth", "fw": "fw-converted.pth", "base": "baseline-converted.pth",
              "fam": "FAM-converted.pth", "fat": "FAT-converted.pth", "hfan": "HFAN-b0-converted.pth"}


@pytest.mark.parametrize("method", SELECT_METHODS)
def test_matches_the_original_code(method, reference_inputs, tmp_path):
    path = tmp_path / FILE_NAMES[method]
    torch.save({"meta": {"note": "mmcv layout"}, "state_dict": _official_state_for(method)}, path)
    model = load_model(path)  # preset and select_method detected from the keys / official file name
    assert model.config.backbone.name == "mit_b0"
    assert model.config.decode_head.select_method == method
    expected = torch.load(shared_path(f"{REFERENCE}/outputs_b0_{method}.pt"), weights_only=True)
    # the original's operators, and the decoder fold and fused oneDNN kernels that every eval forward runs
    for fold, fuse in ((False, False), (True, False), (False, True), (True, True)):
        model.decode_head.fold_linear_fuse = fold
        set_fused_kernels(model, fuse)
        with torch.no_grad():
            logits = model(reference_inputs["frame"], reference_inputs["flow"])
        assert (logits - expected["decode_logits"]).abs().max().item() <= 1e-4, f"fold {fold}, fused kernels {fuse}"
    # The full test path: one 512x512 window, logits to 512x512, softmax, argmax.
    probs = Predictor(model).logits(reference_inputs["frame"], reference_inputs["flow"]).softmax(1)
    agreement = (probs.argmax(1).to(torch.uint8) == expected["seg_pred"]).float().mean().item()
    assert agreement >= 0.9999


def test_the_fused_mix_ffn_kernel_runs_only_in_eager_cpu_inference_and_equals_the_original(monkeypatch):
    """Eval without autograd takes the one oneDNN call; training, autograd and graph capture take the original's
    three operators (the fused kernel has no backward and is not an exportable operator)."""
    torch.manual_seed(0)
    ffn = MixFFN(32, 128)
    x = torch.randn(2, 12 * 20, 32)
    fused_calls = []
    original = MixFFN._conv_gelu_onednn
    monkeypatch.setattr(MixFFN, "_conv_gelu_onednn",
                        lambda self, *args: fused_calls.append(1) or original(self, *args))
    reference = ffn.fc2(torch.nn.functional.gelu(ffn.dwconv(ffn.fc1(x), 12, 20)))
    ffn.eval()
    with torch.no_grad():
        fused = ffn(x, 12, 20)
    assert fused_calls == [1] and (fused - reference).abs().max().item() <= 1e-5
    ffn(x, 12, 20).sum().backward()  # eval with autograd: the original operators, gradients flow
    ffn.train()
    with torch.no_grad():
        ffn(x, 12, 20)
    assert fused_calls == [1] and ffn.fc1.weight.grad is not None


def test_a_block_with_fused_linear_layers_equals_the_original_operators(monkeypatch):
    """In eval without autograd every linear layer of a block is one oneDNN call, the skip connections inside
    attention's and the feed-forward's last one; the output is the original's x + attn(norm1(x)), then
    x + mlp(norm2(x)). With autograd (or set_fused_kernels off) none of them runs."""
    torch.manual_seed(0)
    block = Block(32, num_heads=2, mlp_ratio=4, sr_ratio=2, drop_path_rate=0.1).eval()
    x = torch.randn(2, 12 * 20, 32)
    original = copy.deepcopy(block)
    set_fused_kernels(original, False)
    with torch.no_grad():
        x1 = x + original.attn(original.norm1(x), 12, 20)
        reference = x1 + original.mlp(original.norm2(x1), 12, 20)
    calls = []
    kernels = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(onednn, "linear", lambda layer, x, fused, residual=None: calls.append(
        (fused, residual is not None)) or _fused_linear(kernels, layer, x, fused, residual))
    with torch.no_grad():
        fused = block(x, 12, 20)
    # q, kv, fc1 plain; proj and fc2 with the residual
    assert sorted(calls) == [(True, False)] * 3 + [(True, True)] * 2
    assert (fused - reference).abs().max().item() <= 1e-5
    calls.clear()
    block(x, 12, 20).sum().backward()  # autograd: the original operators
    assert all(not fused for fused, _ in calls) and block.attn.q.weight.grad is not None
    calls.clear()
    set_fused_kernels(block, False)
    with torch.no_grad():
        unfused = block(x, 12, 20)
    assert all(not fused for fused, _ in calls)
    assert (unfused - reference).abs().max().item() <= 1e-5


@pytest.mark.parametrize("norm", [True, False])
def test_a_conv_module_runs_as_one_fused_call_in_cpu_inference_and_equals_the_original(norm, monkeypatch):
    """conv, BN (folded into the convolution at its running statistics), ReLU as one oneDNN call in eval without
    autograd; training and autograd run the three operators, whose gradients reach the BN."""
    torch.manual_seed(0)
    module = ConvModule(24, 16, norm=norm)
    if norm:
        module.bn.running_mean.uniform_(-1, 1)
        module.bn.running_var.uniform_(0.5, 2.0)
        module.bn.weight.data.uniform_(0.5, 1.5)
        module.bn.bias.data.uniform_(-0.5, 0.5)
    module.eval()
    x = torch.randn(2, 24, 12, 20)
    reference = torch.relu(module.bn(module.conv(x)) if norm else module.conv(x))
    calls = []
    kernel = onednn.conv_pointwise
    monkeypatch.setattr(onednn, "conv_pointwise", lambda *args: calls.append(1) or kernel(*args))
    with torch.no_grad():
        fused = module(x)
    assert calls == [1] and (fused - reference).abs().max().item() <= 1e-5
    module(x).sum().backward()  # autograd: the original operators
    assert calls == [1] and module.conv.weight.grad is not None
    set_fused_kernels(module, False)
    with torch.no_grad():
        assert (module(x) - reference).abs().max().item() == 0 and calls == [1]


def test_backbone_outputs_stay_channels_last_in_cpu_inference_and_equal_the_original():
    """Eager CPU inference returns the stage outputs as channels-last views of the tokens (no copy); with autograd
    or the fused kernels off they are the original's contiguous NCHW tensors, with the same values."""
    torch.manual_seed(0)
    backbone = build_model(get_preset("hfan-b0")).backbone.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        fast = backbone(x)
    original = backbone(x)  # autograd: the original's operators and layout
    set_fused_kernels(backbone, False)
    with torch.no_grad():
        unfused = backbone(x)
    for level, (f, o, u) in enumerate(zip(fast, original, unfused)):
        assert f.is_contiguous(memory_format=torch.channels_last) and not f.is_contiguous(), level
        assert o.is_contiguous() and u.is_contiguous(), level
        assert (f - o).abs().max().item() <= 1e-5 and (f - u).abs().max().item() <= 1e-5, level


def _fused_linear(kernels, layer, x, fused, residual):
    """onednn.linear spelled out against the oneDNN kernels themselves."""
    if not fused:
        return layer(x) if residual is None else residual + layer(x)
    if residual is None:
        return kernels(x, layer.weight, layer.bias, "none", [], "")
    return kernels.binary(x, residual, layer.weight, layer.bias, "add")


def test_backbone_features_match(reference_inputs):
    model = build_model(get_preset("hfan-b0")).eval()
    model.load_state_dict(official_to_ours(_official_state_for("hfan")))
    expected = torch.load(shared_path(f"{REFERENCE}/features_b0.pt"), weights_only=True)["backbone_out"]
    with torch.no_grad():
        image_feats, flow_feats = model.forward_features(reference_inputs["frame"], reference_inputs["flow"])
    for ours_image, ours_flow, theirs in zip(image_feats, flow_feats, expected):
        assert (ours_image - theirs[:1]).abs().max().item() <= 1e-4  # row 0 = frame
        assert (ours_flow - theirs[1:]).abs().max().item() <= 1e-4  # row 1 = flow


def _read_key_list(path) -> dict[str, dict[str, tuple]]:
    """{section: {key: shape}}; sections are `## select_method=...` headers (the whole file is one section)."""
    sections, current = {}, "hfan"
    for line in path.read_text().splitlines():
        if line.startswith("## select_method="):
            current = line.split("=", 1)[1].strip()
            continue
        if not line or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        sections.setdefault(current, {})[key] = tuple(int(x) for x in re.findall(r"\d+", shape))
    return sections


def _expected_official_keys(config) -> dict[str, tuple]:
    state = ours_to_official(build_model(config).state_dict())
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("preset, listing", [("hfan-small", "hfan_small_state_dict.tsv"),
                                             ("hfan-medium", "hfan_medium_state_dict.tsv")])
def test_state_dict_keys_equal_the_official_lists(preset, listing):
    official = _read_key_list(shared_path(f"fixtures/state_dict_keys/{listing}"))["hfan"]
    official = {k: v for k, v in official.items() if not k.startswith("decode_head.conv_seg.")}
    assert _expected_official_keys(get_preset(preset)) == official


def test_ablation_head_keys_equal_the_official_lists():
    sections = _read_key_list(shared_path("fixtures/state_dict_keys/hfan_variant_head_keys.tsv"))
    assert {"im", "base", "fam", "fat"} <= set(sections)
    for method, keys in sections.items():
        official = {k: v for k, v in keys.items() if not k.startswith("decode_head.conv_seg.")}
        config = apply_overrides(get_preset("hfan-small"), [f"decode_head.select_method={method}"])
        ours = {k: v for k, v in _expected_official_keys(config).items() if k.startswith("decode_head.")}
        assert ours == official, method


@pytest.mark.parametrize("preset, expected", [("hfan-small", 14_594_508 - 258), ("hfan-medium", 28_264_908 - 258),
                                              ("hfan-large", 48_140_748 - 258)])
def test_parameter_counts_equal_spec(preset, expected):
    # SPEC §3.4 counts include the 258 parameters of the dead conv_seg, which we do not build.
    assert sum(p.numel() for p in build_model(get_preset(preset)).parameters()) == expected


def test_unknown_select_method_lists_the_valid_ones():
    config = get_preset("hfan-b0")
    config.decode_head.select_method = "xyz"
    with pytest.raises(ValueError, match="im, fw, base, fam, fat, hfan"):
        build_model(config)


def test_forward_shapes_dtype_and_determinism():
    model = build_model(get_preset("hfan-b0")).eval()
    frames, flows = torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        first, second = model(frames, flows), model(frames, flows)
        single = model(frames[1:], flows[1:])
    assert first.shape == (2, 2, 16, 24) and first.dtype == torch.float32
    assert torch.equal(first, second)
    assert torch.allclose(first[1:], single, atol=1e-5)  # no cross-sample operation in eval mode


def test_drop_path_only_in_training():
    model = build_model(get_preset("hfan-b0"))
    frames, flows = torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64)
    model.train()
    torch.manual_seed(1)
    a = model(frames, flows)
    torch.manual_seed(2)
    b = model(frames, flows)
    assert not torch.allclose(a, b)
    a.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters()), "every parameter takes part"


def test_timm_backbone_builds_and_runs():
    pytest.importorskip("timm")
    config = apply_overrides(get_preset("hfan-b0"), ["backbone.name=timm:resnet18"])
    model = build_model(config).eval()
    assert model.backbone.embed_dims == (64, 128, 256, 512)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64)).shape == (1, 2, 16, 16)
