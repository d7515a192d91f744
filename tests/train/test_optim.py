import io

import pytest
import torch
from torch import nn

from hfan.config import ScheduleConfig
from hfan.presets import get_train_preset
from hfan.train.optim import build_optimizer, build_scheduler, lr_at, match_rule


def _module(**children) -> nn.Module:
    module = nn.Module()
    for name, child in children.items():
        setattr(module, name, child)
    return module


def stand_in_model() -> nn.Module:
    """Parameter names of HFAN (MiT backbone + decode head), one block and one level of each, tiny sizes."""
    c = 8
    block = _module(
        norm1=nn.LayerNorm(c),
        attn=_module(q=nn.Linear(c, c), kv=nn.Linear(c, 2 * c), proj=nn.Linear(c, c),
                     sr=nn.Conv2d(c, c, 2, 2), norm=nn.LayerNorm(c)),
        norm2=nn.LayerNorm(c),
        mlp=_module(fc1=nn.Linear(c, 4 * c), dwconv=_module(dwconv=nn.Conv2d(4 * c, 4 * c, 3, groups=4 * c)),
                    fc2=nn.Linear(4 * c, c)),
    )
    backbone = _module(patch_embed1=_module(proj=nn.Conv2d(3, c, 7), norm=nn.LayerNorm(c)),
                       block1=nn.ModuleList([block]), norm1=nn.LayerNorm(c))
    head = _module(
        linear_c1=_module(proj=nn.Linear(c, 16)),
        linear_fuse=_module(conv=nn.Conv2d(16, 16, 1, bias=False), bn=nn.BatchNorm2d(16)),
        hfan1=_module(ca_layers=nn.Sequential(nn.Conv2d(c, 4, 1), nn.BatchNorm2d(4))),
        linear_pred=nn.Conv2d(16, 2, 1),
    )
    return _module(backbone=backbone, decode_head=head)


BACKBONE_NORMS = {f"backbone.{name}.{kind}" for kind in ("weight", "bias") for name in
                  ("patch_embed1.norm", "block1.0.norm1", "block1.0.attn.norm", "block1.0.norm2", "norm1")}
BACKBONE_OTHERS = {f"backbone.{name}.{kind}" for kind in ("weight", "bias") for name in
                   ("patch_embed1.proj", "block1.0.attn.q", "block1.0.attn.kv", "block1.0.attn.proj",
                    "block1.0.attn.sr", "block1.0.mlp.fc1", "block1.0.mlp.dwconv.dwconv", "block1.0.mlp.fc2")}
HEAD = {"decode_head.linear_c1.proj.weight", "decode_head.linear_c1.proj.bias",
        "decode_head.linear_fuse.conv.weight", "decode_head.linear_fuse.bn.weight",
        "decode_head.linear_fuse.bn.bias", "decode_head.hfan1.ca_layers.0.weight",
        "decode_head.hfan1.ca_layers.0.bias", "decode_head.hfan1.ca_layers.1.weight",
        "decode_head.hfan1.ca_layers.1.bias", "decode_head.linear_pred.weight", "decode_head.linear_pred.bias"}


def _groups(optimizer):
    return {group["name"]: group for group in optimizer.param_groups}


def test_param_groups_hold_exactly_the_parameters_the_rules_name():
    model = stand_in_model()
    optimizer = build_optimizer(model, get_train_preset("hfan-small-160k").optimizer)
    groups = _groups(optimizer)
    assert set(groups) == {"head", "norm", "default"}  # MiT has no pos_block: no empty group
    assert set(groups["head"]["param_names"]) == HEAD
    assert set(groups["norm"]["param_names"]) == BACKBONE_NORMS
    assert set(groups["default"]["param_names"]) == BACKBONE_OTHERS
    named = dict(model.named_parameters())
    for group in groups.values():  # names and tensors line up
        assert all(p is named[n] for p, n in zip(group["params"], group["param_names"]))
    # decode head (BN included): lr x10, decay 0.01; backbone norms: lr x1, decay 0; the rest lr x1, 0.01
    assert (groups["head"]["lr"], groups["head"]["weight_decay"]) == (pytest.approx(6e-4), 0.01)
    assert (groups["norm"]["lr"], groups["norm"]["weight_decay"]) == (6e-5, 0.0)
    assert (groups["default"]["lr"], groups["default"]["weight_decay"]) == (6e-5, 0.01)
    assert optimizer.defaults["betas"] == (0.9, 0.999)


def test_frozen_parameters_are_left_out():
    model = stand_in_model()
    model.backbone.patch_embed1.proj.weight.requires_grad_(False)
    optimizer = build_optimizer(model, get_train_preset("hfan-small-160k").optimizer)
    assert "backbone.patch_embed1.proj.weight" not in _groups(optimizer)["default"]["param_names"]


def test_rule_matching_is_mmcv_order():
    keys = ("norm", "head", "pos_block")
    assert match_rule("decode_head.linear_fuse.bn.weight", keys) == "head"
    assert match_rule("decode_head.norm.weight", keys) == "head"  # equal length: alphabetical, head < norm
    assert match_rule("backbone.pos_block.norm.weight", keys) == "pos_block"  # longest key first
    assert match_rule("backbone.block1.0.attn.q.weight", keys) is None


def test_decoupled_weight_decay_follows_the_groups():
    model = stand_in_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(1.0)
            parameter.grad = torch.zeros_like(parameter)  # zero gradient: only the decay moves weights
    build_optimizer(model, get_train_preset("hfan-small-160k").optimizer).step()
    assert torch.all(model.backbone.norm1.weight == 1.0)
    torch.testing.assert_close(model.backbone.block1[0].attn.q.weight, torch.full((8, 8), 1 - 6e-5 * 0.01))
    torch.testing.assert_close(model.decode_head.linear_fuse.bn.weight, torch.full((16,), 1 - 6e-4 * 0.01))


# SPEC §5: lr(t) = lr0 (1 - t/T), times 1 - (1 - t/3000)(1 - 1e-6) for t < 3000; T = 160 000
STAGE1_FACTORS = {
    0: 1e-6,
    1500: (1 - 1500 / 160_000) * (0.5 + 0.5e-6),
    3000: 0.98125,
    80_000: 0.5,
    159_999: 1 / 160_000,
}


@pytest.mark.parametrize("iteration, factor", STAGE1_FACTORS.items())
def test_lr_formula_of_stage_one(iteration, factor):
    schedule = get_train_preset("hfan-small-160k").schedule
    assert lr_at(iteration, 6e-5, schedule, 160_000) == pytest.approx(6e-5 * factor, rel=1e-12)


def test_scheduler_gives_every_group_its_rate_at_the_checked_iterations():
    config = get_train_preset("hfan-small-160k")
    optimizer = build_optimizer(stand_in_model(), config.optimizer)
    scheduler = build_scheduler(optimizer, config.schedule, config.iterations)
    for iteration, factor in STAGE1_FACTORS.items():
        if iteration:  # jump as a resume does: the rate is closed-form in the iteration
            scheduler.last_epoch = iteration - 1
            optimizer.step()
            scheduler.step()
        groups = _groups(optimizer)
        assert groups["head"]["lr"] == pytest.approx(6e-4 * factor, rel=1e-12)
        assert groups["norm"]["lr"] == pytest.approx(6e-5 * factor, rel=1e-12)
        assert groups["default"]["lr"] == pytest.approx(6e-5 * factor, rel=1e-12)


def test_scheduler_steps_through_the_warm_up_and_resumes_exactly():
    config = get_train_preset("hfan-b0-160k")
    optimizer = build_optimizer(stand_in_model(), config.optimizer)
    scheduler = build_scheduler(optimizer, config.schedule, config.iterations)
    for _ in range(1500):
        optimizer.step()
        scheduler.step()
    assert _groups(optimizer)["norm"]["lr"] == pytest.approx(6e-5 * STAGE1_FACTORS[1500], rel=1e-12)

    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    resumed_optimizer = build_optimizer(stand_in_model(), config.optimizer)
    resumed = build_scheduler(resumed_optimizer, config.schedule, config.iterations)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for sched, opt in ((scheduler, optimizer), (resumed, resumed_optimizer)):
        opt.step()
        sched.step()
    assert [g["lr"] for g in resumed_optimizer.param_groups] == [g["lr"] for g in optimizer.param_groups]


def test_stage_two_rate_is_constant():
    config = get_train_preset("hfan-small-refine")
    optimizer = build_optimizer(stand_in_model(), config.optimizer)
    scheduler = build_scheduler(optimizer, config.schedule, config.iterations)
    for iteration in (0, 1, 2000, 3999):
        scheduler.last_epoch = iteration - 1
        optimizer.step()
        scheduler.step()
        assert _groups(optimizer)["head"]["lr"] == pytest.approx(1e-4, rel=1e-12)
        assert _groups(optimizer)["default"]["lr"] == 1e-5


def test_poly_with_min_lr_and_unknown_policy():
    schedule = ScheduleConfig(policy="poly", power=2.0, min_lr=1e-6, warmup="none")
    assert lr_at(50, 1e-4, schedule, 100) == pytest.approx((1e-4 - 1e-6) * 0.25 + 1e-6)
    with pytest.raises(ValueError, match="poly, fixed"):
        lr_at(0, 1e-4, ScheduleConfig(policy="cosine"), 100)
