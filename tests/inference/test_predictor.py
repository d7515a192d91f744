"""The official test path: sizes, window grid, augmentation, batching."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from hfan.config import AUG_TEST_RATIOS, InferenceConfig, apply_overrides
from hfan.presets import get_preset
from hfan.inference.predictor import Predictor
from hfan.preprocess import network_input_size, rescale_size, resize_for_test, scale_boxes, window_grid
from hfan.models import build_model


def test_davis_frame_goes_to_928x512():
    assert rescale_size(854, 480, (2048, 512)) == (911, 512)
    assert network_input_size(854, 480, (2048, 512), 32) == (928, 512)
    assert resize_for_test(np.zeros((480, 854, 3), np.uint8), (2048, 512), 32).shape == (512, 928, 3)


@pytest.mark.parametrize("size, expected", [((640, 480), (704, 512)), ((480, 854), (512, 928)),
                                            ((3840, 2160), (928, 512)), ((500, 333), (800, 512))])
def test_resize_rounds_up_to_multiples_of_32(size, expected):
    assert network_input_size(*size, (2048, 512), 32) == expected


def test_official_window_grid():
    assert [(x1, x2) for _, _, x1, x2 in window_grid(512, 928, 512, 271)] == [(0, 512), (271, 783), (416, 928)]
    assert len(window_grid(512, 512, 512, 271)) == 1
    assert len(window_grid(384, 704, 512, 271)) == 2  # TTA scale 0.75: windows of 384x512
    assert window_grid(384, 704, 512, 271)[0] == (0, 384, 0, 512)
    assert len(window_grid(896, 1600, 512, 271)) == 18  # TTA scale 1.75: 3 x 6


def test_tta_scale_boxes():
    config = InferenceConfig(ratios=AUG_TEST_RATIOS, flip=True)
    assert scale_boxes(config) == [(1536, 384), (2048, 512), (3584, 896)]
    assert [network_input_size(854, 480, box, 32) for box in scale_boxes(config)] == [(704, 384), (928, 512), (1600, 896)]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(get_preset("hfan-b0")).eval()


def _random_pair(height, width, seed=0, symmetric=False):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
    if symmetric:
        images[:, :, width // 2:] = images[:, :, : width - width // 2][:, :, ::-1]
    return images[0], images[1]


def test_flip_augmentation_gives_a_mirror_symmetric_map_on_a_symmetric_input(model):
    frame, flow = _random_pair(512, 512, symmetric=True)
    plain = Predictor(model, InferenceConfig()).probabilities([frame], [flow])[0, 1]
    flipped = Predictor(model, InferenceConfig(flip=True)).probabilities([frame], [flow])[0, 1]
    assert torch.allclose(flipped, flipped.flip(1), atol=1e-5)
    assert not torch.allclose(plain, plain.flip(1), atol=1e-3)


def test_slide_output_size_probabilities_and_batching(model):
    small = InferenceConfig(img_scale=(512, 128), crop_size=128, stride=68)  # several windows, quickly
    frames, flows = zip(*[_random_pair(120, 200, seed=s) for s in range(3)])
    predictor = Predictor(model, small, max_batch=8)
    probs = predictor.probabilities(list(frames), list(flows))
    assert probs.shape == (3, 2, 120, 200)
    assert torch.allclose(probs.sum(1), torch.ones(3, 120, 200), atol=1e-5)
    one_by_one = torch.cat([Predictor(model, small, max_batch=1).probabilities([f], [o])
                            for f, o in zip(frames, flows)])
    assert torch.allclose(probs, one_by_one, atol=1e-5)
    predictions = predictor.predict(list(frames), list(flows))
    assert predictions[0].mask.dtype == bool and predictions[0].probability.dtype == np.float32
    assert np.array_equal(predictions[0].mask, probs[0, 1].numpy() > probs[0, 0].numpy())


def test_whole_mode_equals_slide_on_a_single_window(model):
    frame, flow = _random_pair(480, 480)  # -> 512x512: one window, so both modes compute the same
    slide = Predictor(model, InferenceConfig(mode="slide")).probabilities([frame], [flow])
    whole = Predictor(model, InferenceConfig(mode="whole")).probabilities([frame], [flow])
    assert torch.allclose(slide, whole, atol=1e-5)


def test_multi_scale_runs_all_passes(model, monkeypatch):
    # A quarter of the official box keeps this quick; test_tta_scale_boxes checks the official sizes.
    config = InferenceConfig(img_scale=(512, 128), ratios=AUG_TEST_RATIOS, flip=True, crop_size=128, stride=68)
    calls = []
    predictor = Predictor(model, config)
    original = predictor.logits
    monkeypatch.setattr(predictor, "logits", lambda f, o: calls.append(tuple(f.shape[2:])) or original(f, o))
    frame, flow = _random_pair(60, 107)
    probs = predictor.probabilities([frame], [flow])
    expected = [network_input_size(107, 60, box, 32)[::-1] for box in scale_boxes(config)]
    assert sorted(set(calls)) == sorted(expected) == [(96, 192), (128, 256), (224, 416)] and len(calls) == 6
    assert probs.shape == (1, 2, 60, 107)


def test_bad_pairs_are_refused(model):
    frame, flow = _random_pair(64, 64)
    predictor = Predictor(model)
    with pytest.raises(ValueError, match="1 frames and 2 flow images"):
        predictor.probabilities([frame], [flow, flow])
    with pytest.raises(ValueError, match="must both be"):
        predictor.probabilities([frame], [flow[:32]])
    with pytest.raises(ValueError, match="unknown precision"):
        Predictor(model, precision="int8")


def test_bf16_autocast_path_runs_on_cpu(model):
    frame, flow = _random_pair(64, 64)
    config = apply_overrides(get_preset("hfan-b0"), ["test.mode=whole"]).test
    fp32 = Predictor(model, config).probabilities([frame], [flow])
    bf16 = Predictor(model, config, precision="bf16").probabilities([frame], [flow])
    assert bf16.dtype == torch.float32 and (fp32 - bf16).abs().max() < 0.1


def test_one_frame_through_a_predictor(model):
    """What HFANSegmentor.predict(frame, flow) gave (removed: a Predictor is the one way to run a model)."""
    frame, flow = _random_pair(70, 90)
    prediction = Predictor(model).predict([frame], [flow])[0]
    assert prediction.probability.shape == (70, 90)
    probs = Predictor(model).probabilities([frame], [flow])[0]
    assert np.array_equal(prediction.mask, (probs[1] > probs[0]).numpy())
