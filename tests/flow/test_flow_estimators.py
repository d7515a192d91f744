import cv2
import numpy as np
import pytest
import torch

from hfan.flow import FlowEstimator, build_flow_estimator, flow_partner, flows_at, video_flows
from hfan.flow.estimators import raft_padding

BORDER = 16  # px left out of error measurements: flow at image borders is ill-posed


def _textured(seed: int, height: int = 160, width: int = 224) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    for cell, weight in ((16, 0.5), (8, 0.3), (4, 0.2)):
        coarse = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        image += weight * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(cv2.GaussianBlur(image * 255, (0, 0), 0.8), 0, 255).astype(np.uint8)


def _warp_and_true_flow(image: np.ndarray, affine: np.ndarray):
    """The image moved by `affine` (point x goes to affine @ x), and that motion as flow."""
    height, width = image.shape[:2]
    moved = cv2.warpAffine(image, affine, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    flow = np.stack([affine[0, 0] * xs + affine[0, 1] * ys + affine[0, 2] - xs,
                     affine[1, 0] * xs + affine[1, 1] * ys + affine[1, 2] - ys], axis=-1)
    return moved, flow


def _interior_epe(flow: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.linalg.norm(flow - truth, axis=-1)[BORDER:-BORDER, BORDER:-BORDER]


@pytest.mark.parametrize("name, options, mean_limit", [
    ("dis", {"preset": "medium"}, 0.05),  # measured 0.018 px
    ("dis", {"preset": "ultrafast"}, 0.2),  # measured 0.08 px
    ("farneback", {}, 0.06),  # measured 0.024 px
])
def test_recovers_a_subpixel_translation(name, options, mean_limit):
    image = _textured(0)
    moved, truth = _warp_and_true_flow(image, np.array([[1, 0, 2.5], [0, 1, -1.5]]))
    flow = build_flow_estimator(name, **options)(image, moved)
    assert flow.dtype == np.float32 and flow.shape == image.shape[:2] + (2,)
    epe = _interior_epe(flow, truth)
    assert epe.mean() < mean_limit
    assert np.percentile(epe, 99) < 4 * mean_limit


def test_dis_recovers_an_affine_motion():
    image = _textured(1)
    height, width = image.shape[:2]
    affine = cv2.getRotationMatrix2D((width / 2, height / 2), 3, 1.04)  # 3 degrees, 4 % zoom: up to ~10 px
    affine[:, 2] += (1.0, 0.5)
    moved, truth = _warp_and_true_flow(image, affine)
    epe = _interior_epe(build_flow_estimator("dis")(image, moved), truth)
    assert epe.mean() < 0.15  # measured 0.073 px (DIS medium)
    assert np.percentile(epe, 99) < 0.4  # measured 0.18 px


@pytest.mark.parametrize("preset", ["ultrafast", "fast"])
def test_dis_flow_of_a_pair_does_not_depend_on_earlier_pairs(preset):
    # OpenCV's DIS retunes itself during its first call on small images (see DisEstimator).
    first, second = _textured(6, 64, 80), _textured(7, 64, 80)
    fresh = build_flow_estimator("dis", preset=preset)(first, second)
    used = build_flow_estimator("dis", preset=preset)
    used(second, first)
    np.testing.assert_array_equal(used(first, second), fresh)


def test_bad_names_options_and_frames_are_clear_errors():
    with pytest.raises(ValueError, match="unknown flow estimator 'pwc'"):
        build_flow_estimator("pwc")
    with pytest.raises(ValueError, match="unknown DIS preset"):
        build_flow_estimator("dis", preset="slow")
    with pytest.raises(ValueError, match="'farneback'"):
        build_flow_estimator("farneback", preset="fast")
    dis = build_flow_estimator("dis")
    with pytest.raises(ValueError, match="RGB uint8"):
        dis(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        dis(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


# ------------------------------------------------------------------------------------- RAFT, random weights
def test_raft_padding_matches_raft_input_padder():
    # RAFT's InputPadder: to the next multiple of 8, split half / half (the extra pixel after); plus
    # torchvision's 128 px minimum.
    assert raft_padding(480, 854) == (1, 1, 0, 0)
    assert raft_padding(130, 150) == (1, 1, 3, 3)
    assert raft_padding(133, 128) == (0, 0, 1, 2)
    assert raft_padding(64, 96) == (16, 16, 32, 32)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    # On a CPU shared with other jobs, torch's 2-thread OpenMP barriers made these tiny RAFT calls 50x slower
    # (5 s instead of 0.1 s); one thread keeps the module fast.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def raft_small():
    torch.manual_seed(0)
    return build_flow_estimator("raft_small", weights=None, num_flow_updates=2, device="cpu", batch_size=3)


@pytest.mark.parametrize("size", [(64, 96), (130, 150), (136, 144)])
def test_raft_output_is_cropped_back_to_the_input(raft_small, size):
    first, second = _textured(2, *size), _textured(3, *size)
    flow = raft_small(first, second)
    assert flow.shape == size + (2,) and flow.dtype == np.float32
    # Independent path: numpy edge padding (= replicate), the model, then the crop.
    left, right, top, bottom = raft_padding(*size)

    def prepared(image):
        padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="edge")
        return torch.from_numpy(padded).permute(2, 0, 1)[None].float() / 127.5 - 1

    with torch.inference_mode():
        reference = raft_small.model(prepared(first), prepared(second), num_flow_updates=2)[-1][0]
    reference = reference.permute(1, 2, 0).numpy()[top:top + size[0], left:left + size[1]]
    np.testing.assert_allclose(flow, reference, atol=1e-4)


def test_raft_batch_equals_one_by_one(raft_small):
    firsts = [_textured(s, 128, 136) for s in range(3)]
    seconds = [_textured(s + 10, 128, 136) for s in range(3)]
    batched = raft_small.compute_batch(firsts, seconds)
    for first, second, flow in zip(firsts, seconds, batched):
        np.testing.assert_allclose(flow, raft_small(first, second), atol=1e-3)


def test_raft_large_shapes_and_weights_from_a_file(tmp_path):
    torch.manual_seed(1)
    large = build_flow_estimator("raft_large", weights=None, num_flow_updates=1, device="cpu")
    first, second = _textured(4, 128, 128), _textured(5, 128, 128)
    flow = large(first, second)
    assert flow.shape == (128, 128, 2)
    path = tmp_path / "raft_large.pth"
    torch.save(large.model.state_dict(), path)
    reloaded = build_flow_estimator("raft_large", weights=str(path), num_flow_updates=1, device="cpu")
    np.testing.assert_array_equal(reloaded(first, second), flow)
    with pytest.raises(FileNotFoundError, match="C_T_V1"):
        build_flow_estimator("raft_large", weights=str(tmp_path / "missing.pth"))
    torch.save({"not": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not a torchvision raft_large state dict"):
        build_flow_estimator("raft_large", weights=str(tmp_path / "other.pth"))


# ------------------------------------------------------------------------------------ one flow per frame
class _RecordingEstimator(FlowEstimator):
    """Flow filled with (value of the first frame, value of the second): shows which pair made each flow."""

    def __init__(self, batch_size=1):
        self.batch_size = batch_size
        self.batches = []

    def _compute_batch(self, firsts, seconds):
        self.batches.append(len(firsts))
        return [np.stack([np.full(a.shape[:2], a[0, 0, 0], np.float32), np.full(a.shape[:2], b[0, 0, 0], np.float32)],
                         axis=-1) for a, b in zip(firsts, seconds)]


def _frames(count):
    return [np.full((4, 5, 3), t, np.uint8) for t in range(count)]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_video_flows_forward_then_backward_for_the_last_frame(batch_size):
    estimator = _RecordingEstimator(batch_size)
    results = list(video_flows(iter(_frames(5)), estimator))
    assert [frame[0, 0, 0] for frame, _ in results] == [0, 1, 2, 3, 4]
    assert [tuple(flow[0, 0]) for _, flow in results] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 3)]
    assert max(estimator.batches) == batch_size


def test_video_flows_streams_with_bounded_lookahead():
    consumed = []

    def stream():
        for frame in _frames(30):
            consumed.append(frame[0, 0, 0])
            yield frame

    for t, (frame, _) in enumerate(video_flows(stream(), _RecordingEstimator(batch_size=2))):
        assert len(consumed) <= t + 4  # the frame, its successor, one batch ahead


def test_one_frame_video_gets_a_zero_flow():
    (frame, flow), = video_flows(_frames(1), _RecordingEstimator())
    assert flow.shape == (4, 5, 2) and not flow.any()
    assert list(video_flows([], _RecordingEstimator())) == []
    assert flow_partner(0, 1) is None and flow_partner(0, 2) == 1 and flow_partner(1, 2) == 0


def test_flows_at_measures_against_the_full_video():
    frames = _frames(11)
    loads = []

    def load(position):
        loads.append(position)
        return frames[position]

    results = list(flows_at(load, 11, [0, 5, 10], _RecordingEstimator(batch_size=2)))
    assert [(p, tuple(flow[0, 0])) for p, _, flow in results] == [(0, (0, 1)), (5, (5, 6)), (10, (10, 9))]
    assert sorted(set(loads)) == [0, 1, 5, 6, 9, 10] and len(loads) == 6  # each frame decoded once
