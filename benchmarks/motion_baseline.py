"""The non-learned baseline that the learned model is compared against: "what moves unlike the camera".

For every sequence of a DAVIS-2016 root (default: ../shared/data/davis16_mini): DIS flow for every frame (HFAN's
convention, hfan.flow.video_flows: t -> t+1, backward for the last frame), the camera motion removed
(hfan.flow.camera.remove_camera_motion, --camera-motion), the residual's magnitude scaled to 0..255 and cut by
Otsu's threshold: that is the mask. Also scored: the all-foreground mask (every pixel the object), the floor any
method must beat. Both are scored with the project's DAVIS-2016 evaluation (hfan.evaluation.evaluate_davis:
official J and F, first and last frame not scored, dataset means are means over sequences).

    PYTHONPATH=src python benchmarks/motion_baseline.py [--davis-root ../shared/data/davis16_mini]
        [--camera-motion affine|homography|none] [--dis-preset medium] [--sequences blackswan libby]
        [--json baseline.json]

Prints a markdown table: sequence | J (residual+Otsu) | F | J (all foreground), and the mean row; --json writes
the same per sequence in the format of davis_mini.py's results.json (for benchmarks/plot_davis.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hfan.io.video import list_frame_files
from hfan.io.images import read_image, write_mask
from hfan.evaluation import evaluate_davis
from hfan.flow import build_flow_estimator, video_flows
from hfan.flow.camera import CAMERA_MODELS, remove_camera_motion

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DAVIS = Path(os.environ.get("HFAN_SHARED", REPO_ROOT.parent / "shared")) / "data" / "davis16_mini"


def otsu_mask(residual: np.ndarray) -> np.ndarray:
    """Bool mask of the pixels whose residual motion is above Otsu's threshold of the magnitude image."""
    magnitude = np.linalg.norm(residual, axis=-1)
    largest = float(magnitude.max())
    if largest <= 0:
        return np.zeros(magnitude.shape, bool)
    scaled = np.clip(np.rint(magnitude / largest * 255), 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return mask > 0


def write_sequence_masks(frame_dir: Path, residual_dir: Path, all_dir: Path, estimator, camera_motion: str) -> int:
    """The baseline's and the all-foreground masks of one sequence as 0/255 PNGs named like its frames."""
    paths = list_frame_files(frame_dir)
    residual_dir.mkdir(parents=True)
    all_dir.mkdir(parents=True)
    frames = (read_image(path) for path in paths)
    for path, (frame, flow) in zip(paths, video_flows(frames, estimator), strict=True):
        mask = otsu_mask(remove_camera_motion(flow, camera_motion))
        write_mask(residual_dir / f"{path.stem}.png", mask, foreground_value=255)
        write_mask(all_dir / f"{path.stem}.png", np.ones(frame.shape[:2], bool), foreground_value=255)
    return len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis-root", type=Path, default=DEFAULT_DAVIS,
                        help="DAVIS-2016 root with JPEGImages/480p and Annotations/480p (default: %(default)s)")
    parser.add_argument("--camera-motion", choices=CAMERA_MODELS, default="affine")
    parser.add_argument("--dis-preset", choices=("ultrafast", "fast", "medium"), default="medium")
    parser.add_argument("--sequences", nargs="*", help="default: every sequence of JPEGImages/480p")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the masks in OUT/residual_otsu and OUT/all_foreground (default: a temporary "
                             "folder), e.g. for `hfan eval davis --pred ours OUT/residual_otsu`")
    parser.add_argument("--json", type=Path, default=None, help="write the scores per sequence here")
    args = parser.parse_args()

    images, annotations = args.davis_root / "JPEGImages" / "480p", args.davis_root / "Annotations" / "480p"
    for folder in (images, annotations):
        if not folder.is_dir():
            raise SystemExit(f"{folder} does not exist: expected a DAVIS-2016 root (set --davis-root or HFAN_SHARED)")
    sequences = args.sequences or sorted(p.name for p in images.iterdir() if p.is_dir())
    estimator = build_flow_estimator("dis", preset=args.dis_preset)

    start = time.perf_counter()
    frames = 0
    with tempfile.TemporaryDirectory(prefix="motion_baseline_") as temporary:
        root = args.out or Path(temporary)
        residual_root, all_root = root / "residual_otsu", root / "all_foreground"
        for stale in (residual_root, all_root):  # a rerun never mixes old masks with new ones
            if stale.exists():
                shutil.rmtree(stale)
        for sequence in sequences:
            frames += write_sequence_masks(images / sequence, residual_root / sequence, all_root / sequence,
                                           estimator, args.camera_motion)
        flow_seconds = time.perf_counter() - start
        baseline = evaluate_davis(residual_root, annotations, sequences, workers=1, progress=False)
        everything = evaluate_davis(all_root, annotations, sequences, workers=1, progress=False)

    print(f"DAVIS-2016 protocol on {args.davis_root} ({len(sequences)} sequences, {frames} frames, "
          f"{baseline.n_frames} scored); DIS {args.dis_preset}, camera motion {args.camera_motion}; "
          f"flow and masks {flow_seconds:.1f} s\n")
    print("| sequence | J (residual+Otsu) | F | J (all foreground) |")
    print("|---|---|---|---|")
    for ours, floor in zip(baseline.sequences, everything.sequences, strict=True):
        print(f"| {ours.name} | {ours.j_stats.mean:.3f} | {ours.f_stats.mean:.3f} | {floor.j_stats.mean:.3f} |")
    ours, floor = baseline.summary(), everything.summary()
    print(f"| **mean** | **{ours['J-Mean']:.3f}** | **{ours['F-Mean']:.3f}** | **{floor['J-Mean']:.3f}** |")
    if args.json:
        results = [_as_result("residual + Otsu", baseline), _as_result("all foreground", everything)]
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")


def _as_result(name: str, result) -> dict:
    """One row of davis_mini.py's results.json."""
    summary = result.summary()
    return {"name": name, "options": [], "J": summary["J-Mean"], "F": summary["F-Mean"],
            "sequences": {s.name: {"J": s.j_stats.mean, "F": s.f_stats.mean} for s in result.sequences}}


if __name__ == "__main__":
    main()
