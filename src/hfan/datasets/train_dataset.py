"""Training samples of the flat layout (docs/design.md#dataset-layout): frame + flow image + mask, augmented by
`TrainTransform`.

Frames and flow images are read by hfan.io.images.read_image (the same JPEG decoding as the original's mmcv
loader); masks by read_class_ids, unchanged (palette indices of a P-mode PNG are the class ids).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from hfan.files import write_text
from hfan.io.images import read_class_ids, read_image
from hfan.datasets.layouts import FlatLayout, Sample
from hfan.datasets.transforms import TrainTransform

_SINGLE_CHANNEL_MODES = ("1", "L", "P")
_SHOWN_PROBLEMS = 20


def _size_problem(sample: Sample) -> str | None:
    """Compare image headers only (no pixel decoding) so that a whole data set is checked in seconds."""
    found = []
    try:
        for role, path in (("frame", sample.frame), ("flow", sample.flow), ("mask", sample.mask)):
            with Image.open(path) as image:
                if role == "mask" and image.mode not in _SINGLE_CHANNEL_MODES:
                    return f"{path}: mask mode {image.mode}, expected one channel (L or P) of class ids 0/1"
                found.append((role, path, image.size))
    except OSError as error:
        return f"{sample.stem}: cannot read a header: {error}"
    if len({size for _, _, size in found}) > 1:
        return "size mismatch: " + ", ".join(f"{role} {path} {w}x{h}" for role, path, (w, h) in found)
    return None


class FlatTrainDataset(torch.utils.data.Dataset):
    """`<root>/{frame,flow,mask}/<split>` as augmented training samples, repeated `repeat` times
    (mmcv RepeatDataset: item i is sample i % n).

    An item is addressed by `index` or by `(index, epoch)`: the augmentation draws come from a generator
    seeded with (seed, epoch, index), so an item is the same whatever worker loads it and a resumed run can
    replay the data stream exactly.
    """

    def __init__(self, root: str | Path, split: str, transform: TrainTransform | None = None,
                 repeat: int = 1, seed: int = 1208):
        if repeat < 1:
            raise ValueError(f"repeat must be >= 1, got {repeat}")
        self.root = Path(root)
        self.split = split
        self.samples = FlatLayout(self.root).samples(split, require_masks=True)
        self.transform = transform or TrainTransform()
        self.repeat = repeat
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples) * self.repeat

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame and flow image (uint8 RGB) and mask (uint8 class ids) of item `index`, un-augmented."""
        sample = self.samples[index % len(self.samples)]
        frame, flow = read_image(sample.frame), read_image(sample.flow)
        mask = read_class_ids(sample.mask, self.transform.cfg.ignore_index)
        if not frame.shape[:2] == flow.shape[:2] == mask.shape:
            raise ValueError(f"sizes differ: frame {sample.frame} {frame.shape[1]}x{frame.shape[0]}, "
                             f"flow {sample.flow} {flow.shape[1]}x{flow.shape[0]}, "
                             f"mask {sample.mask} {mask.shape[1]}x{mask.shape[0]}")
        return frame, flow, mask

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        if not 0 <= index < len(self):
            raise IndexError(f"item {index} out of range for {len(self)} items")
        frame, flow, mask = self.load(index)
        rng = np.random.default_rng([self.seed, epoch, index])
        frame, flow, mask = self.transform(frame, flow, mask, rng)
        return {"frame": frame, "flow": flow, "mask": mask}

    def size_problems(self, progress: bool = True, threads: int = 8) -> list[str]:
        """Every sample whose frame, flow and mask sizes differ, or whose mask is not single-channel."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            found = pool.map(_size_problem, self.samples)
            found = tqdm(found, total=len(self.samples), desc=f"checking {self.root.name}/{self.split}",
                         unit="file", disable=not progress)
            return [problem for problem in found if problem is not None]

    def validate_sizes(self, progress: bool = True, report_path: Path | None = None) -> None:
        """Start-up check: one error listing every bad sample (all of them in `report_path` if given)."""
        problems = self.size_problems(progress)
        if not problems:
            return
        shown = "\n  ".join(problems[:_SHOWN_PROBLEMS])
        more = ""
        if len(problems) > _SHOWN_PROBLEMS:
            more = f"\n  ... and {len(problems) - _SHOWN_PROBLEMS} more"
        if report_path is not None:
            write_text(Path(report_path), "\n".join(problems) + "\n")
            more += f"\n  (the full list is in {report_path})"
        raise ValueError(f"{len(problems)} of {len(self.samples)} samples in {self.root} split {self.split!r} "
                         f"are unusable; fix or remove them:\n  {shown}{more}")
