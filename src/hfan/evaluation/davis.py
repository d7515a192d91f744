"""DAVIS-2016 evaluation: region similarity J and boundary accuracy F, per frame, per sequence and per dataset.

The measures follow the official Python evaluation (davisvideochallenge/davis2017-evaluation, `metrics.py` and
`utils.db_statistics`, which reproduce the MATLAB davis-2016 code) so that the numbers are identical: the tests
check the per-frame values against the official ones to 1e-6 and the statistics against the official MATLAB
results of 21 methods. Only the DAVIS-2016 (single object) case is implemented: masks are binary.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from hfan.evaluation.frames import FolderResult, SequenceFrames, collect_sequences, map_sequences
from hfan.io.images import read_mask

BOUNDARY_TOLERANCE = 0.008  # fraction of the image diagonal, as the official `bound_th`
RECALL_THRESHOLD = 0.5
DECAY_BINS = 4


def jaccard(gt: np.ndarray, pred: np.ndarray) -> float:
    """Intersection over union of two bool masks; 1 when both are empty (official `db_eval_iou`)."""
    union = np.count_nonzero(gt | pred)
    return 1.0 if union == 0 else np.count_nonzero(gt & pred) / union


def boundary_map(seg: np.ndarray) -> np.ndarray:
    """The official `_seg2bmap` for a bool mask at its own size: 1-pixel boundaries, offset half a pixel
    towards the origin (a pixel differs from its right, lower or lower-right neighbour; special last row and
    column). A line-by-line port, vectorised; the resizing branch the official code never uses is left out."""
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    boundary[-1, :] = seg[-1, :] ^ east[-1, :]
    boundary[:, -1] = seg[:, -1] ^ south[:, -1]
    boundary[-1, -1] = False
    return boundary


@lru_cache(maxsize=8)
def disk(radius: int) -> np.ndarray:
    """uint8 disk, identical to `skimage.morphology.disk(radius)`: the offsets with x^2 + y^2 <= r^2."""
    offsets = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(offsets, offsets)
    return (x**2 + y**2 <= radius**2).astype(np.uint8)


def boundary_radius(shape: tuple[int, int], tolerance: float = BOUNDARY_TOLERANCE) -> int:
    """`bound_pix` of the official code: ceil(tolerance x image diagonal), 8 pixels at 854x480."""
    return int(math.ceil(tolerance * np.linalg.norm(shape)))


def _boundary_window(first: np.ndarray, second: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of both boundaries. Dilating inside it is exact where the counts are taken: a
    dilated value at a boundary pixel only depends on the other mask's boundary pixels, all inside the box."""
    rows = np.flatnonzero(first.any(axis=1) | second.any(axis=1))
    cols = np.flatnonzero(first.any(axis=0) | second.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def f_measure(gt: np.ndarray, pred: np.ndarray) -> float:
    """Boundary F-measure of two bool masks (official `f_measure`, no void pixels).

    A boundary pixel matches when the other mask has a boundary pixel within the disk of radius
    `boundary_radius`. cv2.dilate with the disk kernel equals the official cv2.dilate / skimage
    binary_dilation on binary images (both treat pixels outside the image as background). Matches are only
    counted on boundary pixels, so dilating the box around the boundaries (see `_boundary_window`) gives
    the same counts as dilating the whole frame, in a fraction of the time.
    """
    kernel = disk(boundary_radius(gt.shape))
    gt_boundary, pred_boundary = boundary_map(gt), boundary_map(pred)
    n_gt, n_pred = np.count_nonzero(gt_boundary), np.count_nonzero(pred_boundary)
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        window = _boundary_window(gt_boundary, pred_boundary)
        gt_boundary, pred_boundary = gt_boundary[window], pred_boundary[window]
        gt_dilated = cv2.dilate(gt_boundary.view(np.uint8), kernel).view(bool)
        pred_dilated = cv2.dilate(pred_boundary.view(np.uint8), kernel).view(bool)
        precision = np.count_nonzero(pred_boundary & gt_dilated) / n_pred
        recall = np.count_nonzero(gt_boundary & pred_dilated) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Statistics:
    mean: float
    recall: float
    decay: float


def db_statistics(per_frame: np.ndarray) -> Statistics:
    """Mean, recall (fraction > 0.5) and decay (first minus last of 4 bins) of one sequence's scored frames.

    The bin edges are the official ones (MATLAB-style rounding of linspace(1, n, 5)). The official code casts
    them to uint8, which wraps past 256 frames; int gives the same numbers below that and correct ones above.
    """
    values = np.asarray(per_frame, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > RECALL_THRESHOLD)
        edges = (np.round(np.linspace(1, len(values), DECAY_BINS + 1) + 1e-10) - 1).astype(int)
        bins = [values[edges[i]:edges[i + 1] + 1] for i in range(DECAY_BINS)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[-1])
    return Statistics(float(mean), float(recall), float(decay))


@dataclass(frozen=True)
class SequenceScores:
    """Per-frame J and F of one sequence's scored frames (all but the first and last)."""

    name: str
    frames: tuple[str, ...]
    j: np.ndarray
    f: np.ndarray

    @property
    def j_stats(self) -> Statistics:
        return db_statistics(self.j)

    @property
    def f_stats(self) -> Statistics:
        return db_statistics(self.f)

    @property
    def jf_mean(self) -> float:
        return (self.j_stats.mean + self.f_stats.mean) / 2


@dataclass(frozen=True)
class DavisResult(FolderResult):
    """`sequences`: SequenceScores. Dataset statistics are averages over sequences, as officially."""

    def _average(self, measure: str, statistic: str) -> float:
        return float(np.mean([getattr(getattr(seq, f"{measure}_stats"), statistic) for seq in self.sequences]))

    def summary(self) -> dict[str, float]:
        """The global table of the official tool: J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean, ..."""
        scores = {f"{measure.upper()}-{statistic.capitalize()}": self._average(measure, statistic)
                  for measure in ("j", "f") for statistic in ("mean", "recall", "decay")}
        return {"J&F-Mean": (scores["J-Mean"] + scores["F-Mean"]) / 2, **scores}


def score_sequence(sequence: SequenceFrames) -> SequenceScores:
    """J and F of every scored frame of one sequence; a size mismatch is an error naming both files."""
    j = np.empty(len(sequence.frames))
    f = np.empty(len(sequence.frames))
    for index, (gt_path, pred_path) in enumerate(zip(sequence.gt_paths, sequence.pred_paths)):
        gt, pred = read_mask(gt_path), read_mask(pred_path)
        if gt.shape != pred.shape:
            raise ValueError(f"size mismatch: {pred_path} is {pred.shape[1]}x{pred.shape[0]} but "
                             f"{gt_path} is {gt.shape[1]}x{gt.shape[0]}")
        j[index] = jaccard(gt, pred)
        f[index] = f_measure(gt, pred)
    return SequenceScores(sequence.name, sequence.frames, j, f)


def _warn_on_soft_maps(sequences: Sequence[SequenceFrames]) -> None:
    """DAVIS scores binary masks: a probability map passes read_mask (any non-zero pixel is foreground) and would
    be scored as an almost all-foreground mask. The first scored frame of each sequence is checked."""
    for sequence in sequences:
        pred = cv2.imread(str(sequence.pred_paths[0]), cv2.IMREAD_GRAYSCALE) if sequence.pred_paths else None
        if pred is not None and len(np.unique(pred)) > 2:
            warnings.warn(f"{sequence.pred_paths[0]} holds {len(np.unique(pred))} grey levels, not a binary mask: "
                          "DAVIS J/F counts every non-zero pixel as foreground; evaluate masks (hfan segment's "
                          "masks/), or threshold the probabilities first", stacklevel=2)
            return


def evaluate_davis(pred_dir: str | Path, gt_dir: str | Path, sequences: Sequence[str] | None = None,
                   only_present: bool = False, workers: int | None = None,
                   progress: bool = True) -> DavisResult:
    """Evaluate DAVIS-layout predictions `<pred>/<seq>/<frame>.png` with the DAVIS-2016 protocol.

    `gt_dir` is `<gt>/<seq>/<frame>.png` (DAVIS, Long-Videos, ...) or a DAVIS root holding Annotations/480p.
    Missing sequences or frames raise one error naming them, unless `only_present` limits the evaluation to
    the sequences present in `pred_dir`. `workers` processes (default: one per CPU) score sequences in parallel.
    """
    frames = collect_sequences(pred_dir, gt_dir, sequences, only_present)
    _warn_on_soft_maps(frames)
    scores = map_sequences(score_sequence, frames, workers, progress, description=f"DAVIS {Path(pred_dir).name}")
    return DavisResult(Path(pred_dir), Path(gt_dir), scores)
