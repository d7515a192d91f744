"""Which frames an evaluation scores, read from a prediction folder and a ground-truth folder.

Both folders use the DAVIS layout `<root>/<sequence>/<frame>.png`. A DAVIS root that holds `Annotations/480p`
is accepted as ground truth too. Ground truth may be sparse (Long-Videos annotates a few frames per video):
the frames scored are the ground-truth frames of each sequence minus its first and last one (the DAVIS-2016
and VSOD protocols), and the prediction must hold a PNG with the same name for each of them; other prediction
files are ignored.
"""
from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import cv2

from hfan.datasets.davis import MIN_SCORED_SEQUENCE, scored_frames
from hfan.io.images import read_mask  # noqa: F401  (read_mask: the one mask reader)

MASK_SUFFIX = ".png"
_MAX_LISTED = 10

Result = TypeVar("Result")


def resolve_gt_root(gt_dir: str | Path) -> Path:
    """`<gt>/<seq>/<frame>.png`, or a DAVIS root whose `Annotations/480p` holds that layout."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"ground-truth folder {gt_dir} does not exist")
    davis_annotations = gt_dir / "Annotations" / "480p"
    return davis_annotations if davis_annotations.is_dir() else gt_dir


@dataclass(frozen=True)
class SequenceFrames:
    """The frames of one sequence that are scored, with their ground-truth and prediction paths."""

    name: str
    frames: tuple[str, ...]
    gt_paths: tuple[Path, ...]
    pred_paths: tuple[Path, ...]


@dataclass(frozen=True)
class FolderResult:
    """What every evaluation returns: the scores of each sequence of one prediction folder."""

    pred_dir: Path
    gt_dir: Path
    sequences: list = field(repr=False)

    @property
    def n_frames(self) -> int:
        """Scored frames, summed over sequences."""
        return sum(len(sequence.frames) for sequence in self.sequences)


def _subfolders(root: Path) -> list[str]:
    return sorted(entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))


def _listing(title: str, items: Sequence[str]) -> str:
    shown = "\n  ".join(items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return f"{title}:\n  {shown}{more}"


def collect_sequences(pred_dir: str | Path, gt_dir: str | Path, sequences: Sequence[str] | None = None,
                      only_present: bool = False) -> list[SequenceFrames]:
    """Pair prediction and ground-truth frames, checking everything before any scoring starts.

    Without `sequences`, every ground-truth sequence is evaluated. A missing prediction sequence or frame, a
    prediction sequence without ground truth and a sequence with fewer than 3 ground-truth frames are reported
    together in one error. `only_present` restricts the evaluation to the sequences the prediction holds.
    """
    pred_root, gt_root = Path(pred_dir), resolve_gt_root(gt_dir)
    if not pred_root.is_dir():
        raise FileNotFoundError(f"prediction folder {pred_root} does not exist")
    gt_sequences = _subfolders(gt_root)
    if not gt_sequences:
        raise FileNotFoundError(f"{gt_root} holds no sequence folders: expected <gt>/<sequence>/<frame>.png "
                                f"or a DAVIS root with Annotations/480p")
    pred_sequences = _subfolders(pred_root)
    selected = list(sequences) if sequences else gt_sequences
    problems: list[str] = []
    unknown = [name for name in selected if name not in gt_sequences]
    if unknown:
        problems.append(_listing(f"{len(unknown)} requested sequence(s) have no ground truth in {gt_root}",
                                 unknown))
    if not sequences:
        extra = [name for name in pred_sequences if name not in gt_sequences]
        if extra:
            problems.append(_listing(f"{len(extra)} prediction sequence(s) have no ground truth in {gt_root} "
                                     f"(pass --sequences to choose the sequences to evaluate)", extra))
    if only_present:
        selected = [name for name in selected if name in pred_sequences]
        if not selected:
            problems.append(f"{pred_root} holds none of the {len(gt_sequences)} ground-truth sequences")
    absent = [name for name in selected if name in gt_sequences and name not in pred_sequences]
    if absent:
        problems.append(_listing(f"{len(absent)} sequence(s) missing in {pred_root} (pass --only-present to "
                                 f"evaluate only the sequences it holds, or --sequences)", absent))

    collected, missing_frames = [], []
    for name in selected:
        if name not in gt_sequences or name not in pred_sequences:
            continue
        gt_paths = sorted((gt_root / name).glob("*" + MASK_SUFFIX))
        if len(gt_paths) < MIN_SCORED_SEQUENCE:
            problems.append(f"{gt_root / name} holds {len(gt_paths)} mask(s): at least 3 are needed because "
                            f"the first and last frame are not scored")
            continue
        scored = scored_frames(gt_paths)
        pred_paths = [pred_root / name / path.name for path in scored]
        missing_frames += [str(path) for path in pred_paths if not path.is_file()]
        collected.append(SequenceFrames(name, tuple(path.stem for path in scored), tuple(scored),
                                        tuple(pred_paths)))
    if missing_frames:
        problems.append(_listing(f"{len(missing_frames)} predicted frame(s) missing", missing_frames))
    if problems:
        raise FileNotFoundError(f"cannot evaluate {pred_root} against {gt_root}:\n" + "\n".join(problems))
    return collected


def default_workers() -> int:
    return os.cpu_count() or 1


def _quiet_worker() -> None:
    # One process per core already; OpenCV's own threads would only compete with the other workers.
    cv2.setNumThreads(1)


def _worker_context():
    """forkserver where available: plain fork deadlocks when the caller has already run OpenCV's or torch's
    thread pools (as `hfan infer --eval` has), since the children inherit their locks without their threads.
    The server is forked once from a clean process with the evaluation modules preloaded, so workers start fast."""
    methods = multiprocessing.get_all_start_methods()
    if "forkserver" not in methods:
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["hfan.evaluation.davis", "hfan.evaluation.vsod"])
    return context


def _call_indexed(function: Callable[[SequenceFrames], Result],
                  item: tuple[int, SequenceFrames]) -> tuple[int, Result]:
    index, sequence = item
    return index, function(sequence)


def map_sequences(function: Callable[[SequenceFrames], Result], sequences: Sequence[SequenceFrames],
                  workers: int | None = None, progress: bool = True,
                  description: str = "evaluating") -> list[Result]:
    """`function` over the sequences, in parallel over processes, with a frame-counting progress bar.

    Results come in the order of `sequences`. The longest sequences start first so that the processes finish
    together. `function` must be a module-level function (it is pickled to the workers).
    """
    from tqdm import tqdm

    workers = max(1, min(workers or default_workers(), len(sequences)))
    total = sum(len(sequence.frames) for sequence in sequences)
    results: dict[int, Result] = {}
    with tqdm(total=total, unit="frame", desc=description, disable=not progress) as bar:
        if workers == 1:
            for index, sequence in enumerate(sequences):
                results[index] = function(sequence)
                bar.update(len(sequence.frames))
        else:
            longest_first = sorted(enumerate(sequences), key=lambda item: -len(item[1].frames))
            with _worker_context().Pool(workers, initializer=_quiet_worker) as pool:
                for index, result in pool.imap_unordered(partial(_call_indexed, function), longest_first):
                    results[index] = result
                    bar.update(len(sequences[index].frames))
    return [results[index] for index in range(len(sequences))]
