"""Camera-motion removal (hfan.flow.camera) and the flow image a model sees (hfan.flow.model_input).

All fields are synthetic and built here, independently of hfan's own helpers: a known 2x3 camera matrix (rotation,
zoom, translation), a known homography, a foreground block moving on its own. Everything runs in milliseconds.
"""
import cv2
import numpy as np
import pytest

from hfan.flow import build_flow_estimator, flow_to_hfan_image
from hfan.flow.camera import CAMERA_MODELS, affine_flow, camera_flow, fit_affine, remove_camera_motion
from hfan.flow.model_input import ScaledFlowEstimator, flow_image_for_model, scaled_size

HEIGHT, WIDTH = 120, 160
ZOOM, ANGLE, SHIFT = 1.02, 0.01, (3.0, -2.0)  # 2 % zoom, 0.57 degrees, (3, -2) px per frame
# The flow of a camera that zooms and rotates about the origin and shifts: flow(x) = (s R - I) x + t.
CAMERA = np.array([[ZOOM * np.cos(ANGLE) - 1, -ZOOM * np.sin(ANGLE), SHIFT[0]],
                   [ZOOM * np.sin(ANGLE), ZOOM * np.cos(ANGLE) - 1, SHIFT[1]]])
BLOCK_MOTION = np.array([-6.0, 4.0])  # px: the foreground's own motion in the frame
NOISE = 0.05  # px, standard deviation of the noise added to the field


def _field(matrix: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.stack([matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2],
                     matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]], axis=-1).astype(np.float32)


def _block(fraction: float = 0.2, top: int = 20, left: int = 30) -> np.ndarray:
    """A rectangle of `fraction` of the image, with the image's aspect ratio."""
    height, width = round(HEIGHT * np.sqrt(fraction)), round(WIDTH * np.sqrt(fraction))
    block = np.zeros((HEIGHT, WIDTH), bool)
    block[top:top + height, left:left + width] = True
    return block


def _scene(fraction: float = 0.2, seed: int = 0):
    """Camera field, with a block moving by BLOCK_MOTION instead, plus noise: (observed, camera, block)."""
    rng = np.random.default_rng(seed)
    camera = _field(CAMERA)
    block = _block(fraction)
    observed = camera.copy()
    observed[block] = BLOCK_MOTION
    observed += rng.normal(0, NOISE, observed.shape).astype(np.float32)
    return observed, camera, block


def _projective_field() -> np.ndarray:
    """x -> H x of a plane seen by a moving camera; a clearly non-affine H (perspective terms ~1e-3 / px)."""
    matrix = np.array([[1.0, 0.01, 2.0], [0.005, 1.0, -1.0], [3e-4, 2e-4, 1.0]])
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    denominator = matrix[2, 0] * xs + matrix[2, 1] * ys + matrix[2, 2]
    u = (matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]) / denominator - xs
    v = (matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]) / denominator - ys
    return np.stack([u, v], axis=-1).astype(np.float32)


def _magnitude(flow: np.ndarray) -> np.ndarray:
    return np.linalg.norm(flow, axis=-1)


# ------------------------------------------------------------------------------------------ hfan.flow.camera
def test_the_test_field_is_a_real_camera_motion():
    field = _field(CAMERA)
    assert 3 < _magnitude(field).max() < 10  # several px, varying over the image: not a translation
    assert _magnitude(field - field[0, 0]).max() > 2


def test_fit_affine_recovers_the_matrix():
    np.testing.assert_allclose(fit_affine(_field(CAMERA)), CAMERA, atol=1e-6)
    np.testing.assert_allclose(affine_flow(CAMERA, HEIGHT, WIDTH), _field(CAMERA), atol=1e-5)


@pytest.mark.parametrize("model", ["affine", "homography"])
def test_a_pure_camera_field_is_removed(model):
    field = _field(CAMERA)
    residual = remove_camera_motion(field, model)
    assert residual.shape == field.shape and residual.dtype == np.float32
    assert np.abs(residual).max() < 1e-3
    np.testing.assert_allclose(camera_flow(field, model), field, atol=1e-3)


@pytest.mark.parametrize("model", ["affine", "homography"])
@pytest.mark.parametrize("fraction", [0.2, 0.4])  # the affine fit breaks down at about 45 % (measured)
def test_a_moving_foreground_does_not_pull_the_fit(model, fraction):
    observed, camera, block = _scene(fraction)
    fitted = camera_flow(observed, model)
    # the camera is found to within 0.05 px where it is the truth (measured: 0.01-0.02 px)
    assert np.abs(fitted - camera)[~block].max() < 0.05
    residual = remove_camera_motion(observed, model)
    # background: only the noise is left
    assert np.abs(residual[~block]).max() < 6 * NOISE
    assert abs(float(np.mean(residual[~block]))) < 0.01
    # block: its own motion relative to the camera, i.e. the observed block flow minus the true camera flow
    np.testing.assert_allclose(residual[block], observed[block] - camera[block], atol=0.05)
    expected = BLOCK_MOTION - camera[block]
    assert np.abs(residual[block] - expected).mean() < 2 * NOISE
    assert _magnitude(residual[block]).mean() > 5  # the block stands out


def test_fit_affine_matrix_with_a_foreground():
    observed, camera, block = _scene(fraction=0.2, seed=3)
    matrix = fit_affine(observed)
    assert matrix.shape == (2, 3)
    assert np.abs(affine_flow(matrix, HEIGHT, WIDTH) - camera)[~block].max() < 0.05
    # an ordinary least-squares fit would be pulled by the block: the robust fit must not be
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    design = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], axis=1)
    least_squares = np.linalg.lstsq(design, observed.reshape(-1, 2), rcond=None)[0].T
    assert np.abs(affine_flow(least_squares, HEIGHT, WIDTH) - camera)[~block].max() > 1.0


def test_homography_removes_a_projective_field_far_better_than_affine():
    field = _projective_field()
    assert _magnitude(field).max() > 5
    by_homography = _magnitude(remove_camera_motion(field, "homography"))
    by_affine = _magnitude(remove_camera_motion(field, "affine"))
    assert by_homography.max() < 0.01  # measured 1e-5 px
    assert by_affine.mean() > 0.2  # measured 0.65 px: an affine cannot bend straight lines' spacing
    assert by_affine.mean() > 100 * by_homography.mean()


def test_none_returns_the_flow_unchanged():
    observed, _, _ = _scene()
    residual = remove_camera_motion(observed, "none")
    assert residual.dtype == np.float32
    np.testing.assert_array_equal(residual, observed)
    np.testing.assert_array_equal(camera_flow(observed, "none"), np.zeros_like(observed))
    np.testing.assert_array_equal(remove_camera_motion(observed.astype(np.float64), "none"), observed)


def test_camera_models_are_the_three():
    assert CAMERA_MODELS == ("none", "affine", "homography")


def test_an_unknown_model_raises():
    with pytest.raises(ValueError, match="unknown camera motion model 'similarity'"):
        remove_camera_motion(_field(CAMERA), "similarity")
    with pytest.raises(ValueError, match="valid: none, affine, homography"):
        camera_flow(_field(CAMERA), "")


@pytest.mark.parametrize("model", ["affine", "homography"])
@pytest.mark.parametrize("shape", [(HEIGHT, WIDTH), (HEIGHT, WIDTH, 3), (HEIGHT, WIDTH, 1), (2, HEIGHT, WIDTH)])
def test_a_wrongly_shaped_flow_raises(model, shape):
    with pytest.raises(ValueError, match="HxWx2"):
        remove_camera_motion(np.zeros(shape, np.float32), model)
    with pytest.raises(ValueError, match="HxWx2"):
        camera_flow(np.zeros(shape, np.float32), model)


# ------------------------------------------------------------------------------------- hfan.flow.model_input
def test_model_image_without_camera_removal_is_hfans_image():
    observed, _, _ = _scene()
    image = flow_image_for_model(observed, "none")
    assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image, flow_to_hfan_image(observed))
    assert flow_image_for_model(observed).tobytes() == flow_to_hfan_image(observed).tobytes()  # default: none


@pytest.mark.parametrize("model", ["affine", "homography"])
def test_model_image_with_camera_removal_draws_the_residual(model):
    observed, _, _ = _scene()
    image = flow_image_for_model(observed, model)
    np.testing.assert_array_equal(image, flow_to_hfan_image(remove_camera_motion(observed, model)))
    assert not np.array_equal(image, flow_to_hfan_image(observed))


def test_a_pure_camera_field_gives_a_white_image():
    field = _field(CAMERA)
    assert flow_to_hfan_image(field).mean() < 200  # drawn raw, the camera motion is colourful
    image = flow_image_for_model(field, "affine")
    assert image.mean() > 250  # zero residual -> white (measured 253.5)


def test_model_image_is_resized_to_the_asked_size():
    observed, _, _ = _scene()
    image = flow_image_for_model(observed[::2, ::2].copy(), "affine", size=(WIDTH, HEIGHT))
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert flow_image_for_model(observed, "none", size=(97, 31)).shape == (31, 97, 3)
    # the frame's own size: no resampling at all
    np.testing.assert_array_equal(flow_image_for_model(observed, "none", size=(WIDTH, HEIGHT)),
                                  flow_to_hfan_image(observed))


def test_encoding_at_the_model_size_shrinks_the_field_before_the_fit_and_the_colours():
    """flow.encode_at=model: the field is area-averaged to the model's size (its vectors scaled with it), the
    camera fitted and the colours normalised there, then the image brought to `size`."""
    observed, _, block = _scene()
    small = (WIDTH // 4, HEIGHT // 4)
    image = flow_image_for_model(observed, "affine", size=(WIDTH, HEIGHT), encode_size=small)
    shrunk = cv2.resize(observed, small, interpolation=cv2.INTER_AREA) * np.float32([0.25, 0.25])
    expected = cv2.resize(flow_to_hfan_image(remove_camera_motion(shrunk, "affine")), (WIDTH, HEIGHT),
                          interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(image, expected)
    # the block still stands out of a white background
    assert image[block].mean() < 200 < image[~block].mean()
    # the field's own size: the same as without encode_size
    np.testing.assert_array_equal(flow_image_for_model(observed, "affine", encode_size=(WIDTH, HEIGHT)),
                                  flow_image_for_model(observed, "affine"))


def test_scaled_size():
    assert scaled_size(96, 64, 0.5) == (48, 32)
    assert scaled_size(854, 480, 0.5) == (427, 240)
    assert scaled_size(96, 64, 1.0) == (96, 64)
    assert scaled_size(40, 20, 0.1) == (16, 16)  # at least 16 px a side


def _textured(seed: int, height: int = 64, width: int = 96) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC) * 255
    return np.clip(image, 0, 255).astype(np.uint8)


def _frame_pair():
    first = _textured(0)
    second = cv2.warpAffine(first, np.float32([[1, 0, 2], [0, 1, 1]]), (96, 64), borderMode=cv2.BORDER_REFLECT101)
    return first, second


def test_scaled_estimator_returns_the_flow_at_half_size():
    first, second = _frame_pair()
    estimator = ScaledFlowEstimator(build_flow_estimator("dis"), 0.5)
    assert estimator.name == "dis"
    flow = estimator(first, second)
    assert flow.shape == (32, 48, 2) and flow.dtype == np.float32
    # in the smaller frame's pixels: a (2, 1) px shift is about (1, 0.5)
    interior = flow[8:-8, 8:-8].reshape(-1, 2)
    np.testing.assert_allclose(np.median(interior, axis=0), [1.0, 0.5], atol=0.25)
    flows = estimator.compute_batch([first, second], [second, first])
    assert [f.shape for f in flows] == [(32, 48, 2)] * 2
    # and its model image comes back at the frame's size
    assert flow_image_for_model(flow, "affine", size=(96, 64)).shape == (64, 96, 3)


def test_scaled_estimator_at_scale_one_is_the_wrapped_estimator():
    first, second = _frame_pair()
    reference = build_flow_estimator("dis")(first, second)
    scaled = ScaledFlowEstimator(build_flow_estimator("dis"), 1)(first, second)
    assert scaled.shape == (64, 96, 2)
    np.testing.assert_array_equal(scaled, reference)


@pytest.mark.parametrize("scale", [0, -0.5, 1.5, 2])
def test_scaled_estimator_rejects_a_scale_outside_zero_one(scale):
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        ScaledFlowEstimator(build_flow_estimator("dis"), scale)
