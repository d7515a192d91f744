"""The DAVIS release on disk and the DAVIS-2016 protocol's choice of frames, in one place.

* `ImageSets` split lists: the DAVIS-2017 release lists one sequence name a line (`ImageSets/2016/val.txt`), the
  DAVIS-2016 release frame paths (`/JPEGImages/480p/blackswan/00000.jpg /Annotations/480p/...`), the sequence
  being the folder of the first token. `sequence_names_in` reads both.
* The frames an evaluation scores: every annotated frame of a sequence but its first and its last (the
  DAVIS-2016 and VSOD protocols), `scored_frames`; a sequence needs at least `MIN_SCORED_SEQUENCE` frames.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

DAVIS_RESOLUTION = "480p"  # HFAN trains and tests at DAVIS 480p (854x480)
MIN_SCORED_SEQUENCE = 3  # frames: the first and the last are not scored

Item = TypeVar("Item")


def scored_frames(frames: Sequence[Item]) -> list[Item]:
    """The frames of one sequence (in order) that the DAVIS-2016 protocol scores: all but the first and last."""
    return list(frames[1:-1])


def sequence_names_in(path: str | Path) -> list[str]:
    """Sequence names of a list file: one name a line, or ImageSets lines whose first token is a frame path."""
    path = Path(path)
    tokens = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    return list(dict.fromkeys(Path(t).parent.name if "/" in t else t for t in tokens))


def davis_sequences(davis_root: str | Path, split: str) -> list[str]:
    """Sequence names of a split from `ImageSets/2016/<split>.txt` (DAVIS-2017 release: one name a line) or
    `ImageSets/480p/<split>.txt` (DAVIS-2016 release: `/JPEGImages/480p/<seq>/00000.jpg /Annotations/...`)."""
    root = Path(davis_root)
    candidates = [root / "ImageSets" / "2016" / f"{split}.txt", root / "ImageSets" / DAVIS_RESOLUTION / f"{split}.txt"]
    for path in candidates:
        if path.is_file():
            names = sequence_names_in(path)
            if not names:
                raise ValueError(f"{path} lists no sequences")
            return names
    raise FileNotFoundError(f"no DAVIS split list for {split!r}: expected {candidates[0]} (DAVIS-2017 release, "
                            f"sequence names) or {candidates[1]} (DAVIS-2016 release, frame paths)")


def read_sequence_names(names: Sequence[str] | None) -> list[str] | None:
    """Sequence names as given, or read from a text file (`sequence_names_in`); None when none are given."""
    if not names:
        return None
    selected: list[str] = []
    for name in names:
        if name.endswith(".txt"):
            if not Path(name).is_file():
                raise FileNotFoundError(f"sequence list {name} does not exist")
            selected.extend(sequence_names_in(name))
        else:
            selected.append(name)
    return list(dict.fromkeys(selected))
