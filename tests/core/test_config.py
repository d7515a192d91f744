import pytest

from hfan.presets import MODEL_PRESETS, get_preset
from hfan.config import ModelConfig, SELECT_METHODS, apply_overrides


def test_presets_follow_the_paper():
    assert get_preset("hfan-small").backbone.name == "mit_b1"
    assert get_preset("hfan-small").decode_head.embed_dim == 256
    assert get_preset("hfan-medium").backbone.name == "mit_b2"
    assert get_preset("hfan-medium").decode_head.embed_dim == 768
    assert get_preset("hfan-large").backbone.name == "mit_b3"
    assert get_preset("hfan-b0").backbone.name == "mit_b0"


def test_get_preset_returns_a_copy():
    cfg = get_preset("hfan-small")
    cfg.decode_head.select_method = "im"
    assert MODEL_PRESETS["hfan-small"].config.decode_head.select_method == "hfan"


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="hfan-small"):
        get_preset("hfan-tiny")


def test_dotted_overrides_with_the_original_prefix():
    cfg = apply_overrides(get_preset("hfan-small"), ["model.decode_head.select_method=im", "test.stride=200",
                                                      "test.flip=true", "test.ratios=0.75,1.0,1.75"])
    assert cfg.decode_head.select_method == "im"
    assert cfg.test.stride == 200 and cfg.test.flip is True
    assert cfg.test.ratios == (0.75, 1.0, 1.75)


@pytest.mark.parametrize("bad, message", [
    ("decode_head.nope=1", "no field 'nope'"),
    ("decode_head.select_method=xyz", "valid: im, fw, base, fam, fat, hfan"),
    ("test.stride=abc", "expected int"),
    ("decode_head", "key.path=value"),
    ("flow.encode_at=image", "flow.encode_at"),
])
def test_bad_overrides_are_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(get_preset("hfan-small"), [bad])


def test_config_round_trips_through_a_dict():
    cfg = apply_overrides(get_preset("hfan-medium"), ["decode_head.select_method=fat"])
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert set(SELECT_METHODS) == {"im", "fw", "base", "fam", "fat", "hfan"}
