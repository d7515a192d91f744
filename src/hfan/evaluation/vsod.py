"""Video salient object detection scores through pysodmetrics, grouped as the VSOD MATLAB toolbox groups them.

The toolbox HFAN used (FSNet's `main_VSOD.m`, after DAVSOD's `main.m`) skips the first and last ground-truth
frame of every sequence, averages each measure (and each threshold curve) over the frames of a sequence, then
averages the sequences; max and mean F/E come from the dataset's averaged curve. Predictions may be soft 8-bit
maps or binary masks (each map is min-max normalised, as MATLAB's `mapminmax`); ground truth is any mask
`read_mask` accepts.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hfan.evaluation.frames import FolderResult, SequenceFrames, collect_sequences, map_sequences
from hfan.io.images import read_gray, read_mask

F_BETA_SQUARED = 0.3  # beta^2 of the saliency F-measure


@dataclass(frozen=True)
class VsodSequenceScores:
    """One sequence: frame-averaged S-measure and MAE, adaptive E/F, and the E/F curves over 256 thresholds."""

    name: str
    frames: tuple[str, ...]
    s_measure: float
    mae: float
    adaptive_e: float
    adaptive_f: float
    e_curve: np.ndarray = field(repr=False)
    f_curve: np.ndarray = field(repr=False)

    def summary(self) -> dict[str, float]:
        return _summary(self.s_measure, self.e_curve, self.adaptive_e, self.f_curve, self.adaptive_f, self.mae)


def _summary(s_measure: float, e_curve: np.ndarray, adaptive_e: float, f_curve: np.ndarray, adaptive_f: float,
             mae: float) -> dict[str, float]:
    return {"S-measure": float(s_measure), "maxE": float(e_curve.max()), "meanE": float(e_curve.mean()),
            "adpE": float(adaptive_e), "maxF": float(f_curve.max()), "meanF": float(f_curve.mean()),
            "adpF": float(adaptive_f), "MAE": float(mae)}


@dataclass(frozen=True)
class VsodResult(FolderResult):
    """`sequences`: VsodSequenceScores."""

    def summary(self) -> dict[str, float]:
        """Averages over sequences; maxE/meanE and maxF/meanF from the sequence-averaged curves."""
        def average(name: str) -> np.ndarray:
            return np.mean([getattr(sequence, name) for sequence in self.sequences], axis=0)

        return _summary(average("s_measure"), average("e_curve"), average("adaptive_e"), average("f_curve"),
                        average("adaptive_f"), average("mae"))


def read_vsod_pair(gt_path: Path, pred_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(prediction uint8, ground truth uint8 0/255) as pysodmetrics expects them; sizes must agree."""
    pred = read_gray(pred_path)
    gt = read_mask(gt_path)
    if gt.shape != pred.shape:
        raise ValueError(f"size mismatch: {pred_path} is {pred.shape[1]}x{pred.shape[0]} but "
                         f"{gt_path} is {gt.shape[1]}x{gt.shape[0]}")
    return pred, gt.astype(np.uint8) * 255


def score_vsod_sequence(sequence: SequenceFrames) -> VsodSequenceScores:
    import py_sod_metrics as sod

    s_measure, e_measure, mae = sod.Smeasure(), sod.Emeasure(), sod.MAE()
    f_measure = sod.FmeasureV2({"fm": sod.FmeasureHandler(with_dynamic=True, with_adaptive=True,
                                                          beta=F_BETA_SQUARED)})
    for gt_path, pred_path in zip(sequence.gt_paths, sequence.pred_paths):
        pred, gt = read_vsod_pair(gt_path, pred_path)
        for metric in (s_measure, e_measure, mae, f_measure):
            metric.step(pred=pred, gt=gt)
    e_results, f_results = e_measure.get_results()["em"], f_measure.get_results()["fm"]
    return VsodSequenceScores(sequence.name, sequence.frames, float(s_measure.get_results()["sm"]),
                              float(mae.get_results()["mae"]), float(e_results["adp"]),
                              float(f_results["adaptive"]), np.asarray(e_results["curve"]),
                              np.asarray(f_results["dynamic"]))


def evaluate_vsod(pred_dir: str | Path, gt_dir: str | Path, sequences: Sequence[str] | None = None,
                  only_present: bool = False, workers: int | None = None, progress: bool = True) -> VsodResult:
    """S-measure, E-measure (max/mean/adaptive), F-measure (max/mean/adaptive) and MAE of DAVIS-layout
    saliency maps or masks, with the frame selection and error checks of `evaluate_davis`."""
    try:
        import py_sod_metrics  # noqa: F401
    except ImportError as error:
        raise ValueError("VSOD evaluation needs pysodmetrics: pip install 'hfan[vsod]'") from error
    frames = collect_sequences(pred_dir, gt_dir, sequences, only_present)
    scores = map_sequences(score_vsod_sequence, frames, workers, progress,
                           description=f"VSOD {Path(pred_dir).name}")
    return VsodResult(Path(pred_dir), Path(gt_dir), scores)
