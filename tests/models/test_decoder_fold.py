"""The decoder fold (HFANHead.folded_fuse) computes what the original's concatenation (concat_fuse) computes.

Random weights: an equivalence check. The reference fixture of the original code goes through the folded path in
tests/models/test_models.py (every eval-mode forward folds) and tests/inference/test_fast_paths.py."""
from __future__ import annotations

import pytest
import torch

from hfan.config import SELECT_METHODS
from hfan.models import build_model


@pytest.mark.parametrize("select_method", SELECT_METHODS)
def test_folded_fuse_equals_the_concatenation_for_every_select_method(select_method):
    torch.manual_seed(0)
    model = build_model("hfan-b0", options=[f"decode_head.select_method={select_method}"]).eval()
    for module in model.modules():  # BN statistics away from the identity, so that the fold sees real ones
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    frames, flows = torch.randn(2, 3, 96, 160), torch.randn(2, 3, 96, 160)
    head = model.decode_head
    with torch.inference_mode():
        image_feats, flow_feats = model.forward_features(frames, flows)
        fused = [head.fuse(level, i, o) for level, (i, o) in enumerate(zip(image_feats, flow_feats))]
        concatenated, folded = head.concat_fuse(fused), head.folded_fuse(fused)
        assert folded.shape == concatenated.shape == (2, head.linear_fuse.conv.out_channels, 24, 40)
        assert (folded - concatenated).abs().max().item() <= 1e-5 * max(1.0, concatenated.abs().max().item())
        normed = head.linear_fuse.bn(concatenated)  # eval: the BN at its running statistics folds in too
        folded_normed = head.folded_fuse(fused, head.linear_fuse.bn)
        assert (folded_normed - normed).abs().max().item() <= 1e-5 * max(1.0, normed.abs().max().item())
        assert (folded_normed - folded).abs().max().item() > 0.1  # the statistics are not the identity
        logits = model(frames, flows)
        head.fold_linear_fuse = False
        original = model(frames, flows)
    assert (logits - original).abs().max().item() <= 1e-5


def test_training_runs_the_concatenation_and_inference_the_fold(monkeypatch):
    torch.manual_seed(0)
    model = build_model("hfan-b0")
    head = model.decode_head
    calls = []
    for name in ("concat_fuse", "folded_fuse"):
        original = getattr(head, name)
        monkeypatch.setattr(head, name, lambda fused, *norm, original=original, name=name:
                            calls.append(name) or original(fused, *norm))
    frames = torch.randn(2, 3, 64, 64)
    model.train()
    model(frames, frames).sum().backward()  # gradients flow through the original's layers
    assert head.linear_c1.proj.weight.grad is not None and head.linear_fuse.conv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        model(frames, frames)
    assert calls == ["concat_fuse", "folded_fuse"]
