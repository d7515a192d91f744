"""Layouts on disk: the names of every file the project reads or writes in bulk.

The original's flat layout (docs/design.md#dataset-layout), used by DAVIS2SEG and YouTube2SEG:
    <root>/frame/<split>/<video>_<5-digit frame>.jpg   RGB frame
    <root>/flow/<split>/<video>_<5-digit frame>.jpg    colour-coded optical flow, same size
    <root>/mask/<split>/<video>_<5-digit frame>.png    single channel, 0 = background, 1 = foreground
Predictions in the DAVIS layout (`hfan infer`, what `hfan eval` reads):
    <root>/<video>/<5-digit frame>.png                  0/255 masks
    <root>-prob/<video>/<5-digit frame>.png             8-bit probabilities (optional)
The output of `hfan segment` (SegmentOutput):
    <root>/masks/<5-digit frame>.png, <root>/probabilities/..., <root>/flow/<5-digit frame>.jpg, <root>/overlay.mp4
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hfan.files import is_temp_path

FRAME_DIR, FLOW_DIR, MASK_DIR = "frame", "flow", "mask"
FRAME_SUFFIX, FLOW_SUFFIX, MASK_SUFFIX = ".jpg", ".jpg", ".png"
# Ours, not the original's: the raw flow (float16 HxWx2 .npy) kept by `hfan prepare --save-raw-flow`.
RAW_FLOW_DIR, RAW_FLOW_SUFFIX = "flow_raw", ".npy"
_FLAT_STEM = re.compile(r"^(?P<video>.+)_(?P<index>\d{5})$")


def frame_name(index: int, suffix: str = ".png") -> str:
    """3 -> `00003.png`: the frame files of the DAVIS layout and of `hfan segment`'s output."""
    return f"{index:05d}{suffix}"


@dataclass(frozen=True)
class PredictionLayout:
    """Masks (and optionally probabilities) per video in the DAVIS layout, as `hfan infer` writes them."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @property
    def probability_root(self) -> Path:
        return self.root.with_name(self.root.name + "-prob")

    def mask_path(self, video: str, index: int) -> Path:
        return self.root / video / frame_name(index)

    def probability_path(self, video: str, index: int) -> Path:
        return self.probability_root / video / frame_name(index)


@dataclass(frozen=True)
class SegmentOutput:
    """What `hfan segment` writes into its output folder; frames are named `name` (`00012`, or the stem of the
    input frame file for a frame folder)."""

    root: Path
    RECORD = "hfan-segment.json"  # what made the outputs: input, weights, options
    FOLDERS = ("masks", "probabilities", "flow", "cutouts")

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    @staticmethod
    def default_root(source: str | Path) -> Path:
        """`<input name>_hfan` next to the input video or frame folder."""
        source = Path(source).resolve()
        return source.with_name(source.stem + "_hfan")

    @property
    def overlay_path(self) -> Path:
        return self.root / "overlay.mp4"

    @property
    def cutout_video_path(self) -> Path:
        """The object on a green background (H.264 has no alpha channel; the RGBA PNGs in `cutouts/` have)."""
        return self.root / "cutout.mp4"

    @property
    def record_path(self) -> Path:
        return self.root / self.RECORD

    def mask_path(self, name: str) -> Path:
        return self.root / "masks" / f"{name}.png"

    def probability_path(self, name: str) -> Path:
        return self.root / "probabilities" / f"{name}.png"

    def flow_path(self, name: str) -> Path:
        return self.root / "flow" / f"{name}.jpg"

    def cutout_path(self, name: str) -> Path:
        return self.root / "cutouts" / f"{name}.png"

    def existing(self) -> list[Path]:
        """The outputs (and temporary files of interrupted writers) already in the folder."""
        if not self.root.is_dir():
            return []
        names = {*self.FOLDERS, self.overlay_path.name, self.cutout_video_path.name, self.RECORD}
        return sorted(p for p in self.root.iterdir() if p.name in names or is_temp_path(p))


def flat_stem(video: str, index: int) -> str:
    """`blackswan`, 3 -> `blackswan_00003` (the naming `archive()` of the original parses)."""
    return f"{video}_{index:05d}"


def parse_flat_stem(stem: str) -> tuple[str, int]:
    match = _FLAT_STEM.match(stem)
    if match is None:
        raise ValueError(f"{stem!r} is not named <video>_<5-digit frame> as the flat layout requires")
    return match["video"], int(match["index"])


@dataclass(frozen=True)
class Sample:
    video: str
    index: int
    frame: Path
    flow: Path
    mask: Path | None

    @property
    def stem(self) -> str:
        return flat_stem(self.video, self.index)


@dataclass(frozen=True)
class FlatLayout:
    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def frame_path(self, split: str, video: str, index: int) -> Path:
        return self.root / FRAME_DIR / split / (flat_stem(video, index) + FRAME_SUFFIX)

    def flow_path(self, split: str, video: str, index: int) -> Path:
        return self.root / FLOW_DIR / split / (flat_stem(video, index) + FLOW_SUFFIX)

    def mask_path(self, split: str, video: str, index: int) -> Path:
        return self.root / MASK_DIR / split / (flat_stem(video, index) + MASK_SUFFIX)

    def raw_flow_path(self, split: str, video: str, index: int) -> Path:
        return self.root / RAW_FLOW_DIR / split / (flat_stem(video, index) + RAW_FLOW_SUFFIX)

    def samples(self, split: str, require_masks: bool = True) -> list[Sample]:
        """Every sample of a split, sorted by video then frame.

        A frame without its flow image (or, with `require_masks`, its mask) is an error naming the files,
        raised here at start-up rather than when a loader reaches it.
        """
        frame_dir = self.root / FRAME_DIR / split
        if not frame_dir.is_dir():
            raise FileNotFoundError(f"{frame_dir} does not exist: expected the flat layout "
                                    f"<root>/frame/<split>/<video>_<00000>.jpg (run `hfan prepare` first)")
        samples, missing = [], []
        for path in sorted(frame_dir.glob("*" + FRAME_SUFFIX)):
            if path.name.startswith("."):  # an interrupted writer's temporary file (hfan.data.io.atomic_path)
                continue
            video, index = parse_flat_stem(path.stem)
            flow = self.flow_path(split, video, index)
            mask = self.mask_path(split, video, index)
            if not flow.is_file():
                missing.append(str(flow))
            if require_masks and not mask.is_file():
                missing.append(str(mask))
            samples.append(Sample(video, index, path, flow, mask if mask.is_file() else None))
        if missing:
            shown = "\n  ".join(missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FileNotFoundError(f"{len(missing)} file(s) missing in {self.root} for split {split!r}:\n  "
                                    f"{shown}{more}")
        if not samples:
            raise FileNotFoundError(f"{frame_dir} holds no {FRAME_SUFFIX} frames")
        samples.sort(key=lambda s: (s.video, s.index))
        return samples
