import pytest

from hfan.config import TrainConfig, apply_overrides
from hfan.presets import TRAIN_PRESETS, get_preset, get_train_preset

SIZES = {"small": "mit_b1", "medium": "mit_b2", "large": "mit_b3"}


@pytest.mark.parametrize("size", SIZES)
def test_stage_one_presets_follow_the_160k_configs(size):
    cfg = get_train_preset(f"hfan-{size}-160k")
    assert cfg.model == apply_overrides(get_preset(f"hfan-{size}"), ["test.mode=whole"])
    assert cfg.model.backbone.name == SIZES[size]
    assert cfg.model.test.mode == "whole"  # 160k configs validate with whole-image inference
    assert (cfg.data.root, cfg.data.split, cfg.data.repeat) == ("data/YouTube2SEG", "train", 1)
    assert (cfg.data.val_root, cfg.data.val_split) == ("data/DAVIS2SEG", "val")
    assert (cfg.data.batch_per_gpu, cfg.data.workers_per_gpu) == (16, 16)
    assert (cfg.optimizer.lr, cfg.optimizer.betas, cfg.optimizer.weight_decay) == (6e-5, (0.9, 0.999), 0.01)
    s = cfg.schedule
    assert (s.policy, s.power, s.min_lr, s.warmup, s.warmup_iters, s.warmup_ratio) == \
        ("poly", 1.0, 0.0, "linear", 3000, 1e-6)
    assert (cfg.iterations, cfg.checkpoint_interval, cfg.eval_interval) == (160_000, 16_000, 16_000)
    assert (cfg.seed, cfg.deterministic, cfg.precision, cfg.grad_accum_steps) == (1208, True, "fp32", 1)


@pytest.mark.parametrize("size", SIZES)
def test_stage_two_presets_follow_the_refine_configs(size):
    cfg = get_train_preset(f"hfan-{size}-refine")
    assert cfg.model == get_preset(f"hfan-{size}")
    assert cfg.model.backbone.name == SIZES[size] and cfg.model.test.mode == "slide"
    assert (cfg.data.root, cfg.data.split, cfg.data.repeat) == ("data/DAVIS2SEG", "train", 15)
    assert (cfg.data.batch_per_gpu, cfg.data.workers_per_gpu) == (8, 8)
    assert cfg.optimizer.lr == 1e-5 and cfg.optimizer.weight_decay == 0.01
    assert (cfg.schedule.policy, cfg.schedule.warmup) == ("fixed", "none")
    assert (cfg.iterations, cfg.checkpoint_interval, cfg.eval_interval) == (4_000, 4_000, 4_000)
    assert cfg.seed == 1208


def test_param_rules_and_augmentation_defaults():
    cfg = get_train_preset("hfan-b0-160k")
    rules = cfg.optimizer.paramwise.as_dict()
    assert {k: (r.lr_mult, r.decay_mult) for k, r in rules.items()} == \
        {"pos_block": (1.0, 0.0), "head": (10.0, 1.0), "norm": (1.0, 0.0)}
    aug = cfg.data.augment
    assert (aug.img_scale, aug.ratio_range, aug.crop_size, aug.cat_max_ratio) == \
        ((2048, 512), (0.5, 2.0), (512, 512), 0.75)
    assert (aug.flip_prob, aug.seg_pad_val, aug.hue_delta, aug.brightness_delta) == (0.5, 0, 18, 32.0)
    # the paper's two stages for every size, and the recipe of our default model
    assert set(TRAIN_PRESETS) == {f"hfan-{s}-{stage}" for s in ("b0", "small", "medium", "large")
                                  for stage in ("160k", "refine")} | {"hfan-default-composites"}


def test_dotted_overrides_reach_every_section_and_the_model():
    cfg = apply_overrides(get_train_preset("hfan-small-refine"), [
        "optimizer.lr=2e-5", "optimizer.paramwise.head.lr_mult=5", "data.root=/data/DAVIS2SEG",
        "data.augment.crop_size=256,256", "precision=bf16", "grad_accum_steps=2",
        "load_from=work_dirs/iter_160000.pth", "model.decode_head.select_method=im",
    ])
    assert cfg.optimizer.lr == 2e-5 and cfg.optimizer.paramwise.head.lr_mult == 5.0
    assert cfg.data.root == "/data/DAVIS2SEG" and cfg.data.augment.crop_size == (256, 256)
    assert (cfg.precision, cfg.grad_accum_steps, cfg.load_from) == ("bf16", 2, "work_dirs/iter_160000.pth")
    assert cfg.model.decode_head.select_method == "im"
    assert get_train_preset("hfan-small-refine").optimizer.lr == 1e-5  # presets are copies


@pytest.mark.parametrize("bad, message", [
    ("precision=fp8", "valid: fp32, fp16, bf16"),  # hfan.config.PRECISIONS, one list for all
    ("schedule.policy=cosine", "valid: poly, fixed"),
    ("iterations=0", "iterations must be >= 1"),
    ("model=hfan-tiny", "names a section"),  # the model is a ModelConfig: its fields are overridden
    ("model.decode_head.select_method=xyz", "valid: im, fw, base, fam, fat, hfan"),
    ("optimizer.momentum=0.9", "no field 'momentum'"),
    ("data.repeat=two", "expected int"),
])
def test_bad_overrides_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(get_train_preset("hfan-small-160k"), [bad])


def test_load_from_and_resume_exclude_each_other():
    with pytest.raises(ValueError, match="not both"):
        apply_overrides(get_train_preset("hfan-small-refine"), ["load_from=a.pth", "resume=b.pth"])


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="hfan-small-160k"):
        get_train_preset("hfan-small")


def test_config_round_trips_through_a_dict():
    cfg = apply_overrides(get_train_preset("hfan-medium-160k"),
                          ["data.augment.ratio_range=0.75,1.5", "model.test.stride=200"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_none_switches_off_optional_fields():
    cfg = apply_overrides(get_train_preset("hfan-small-160k"), ["data.val_root=none", "pretrained=None"])
    assert cfg.data.val_root is None and cfg.pretrained is None
    cfg = apply_overrides(cfg, ["data.val_root=/data/DAVIS2SEG"])
    assert cfg.data.val_root == "/data/DAVIS2SEG"
