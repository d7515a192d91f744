"""A strip of frames with their masks tinted, from a video and the `masks/` folder `hfan segment` wrote.

    hfan segment examples/blackswan.mp4 --out /tmp/blackswan
    python benchmarks/overlay_strip.py examples/blackswan.mp4 /tmp/blackswan/masks --frames 5,25,45 \\
        --out docs/default_model_blackswan.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from hfan.io.images import overlay_mask, read_mask
from hfan.io.video import open_frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video")
    parser.add_argument("masks", type=Path)
    parser.add_argument("--frames", default="5,25,45")
    parser.add_argument("--width", type=int, default=320, help="width of each tile")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    wanted = [int(i) for i in args.frames.split(",")]
    tiles = []
    for index, frame in enumerate(open_frames(args.video)):
        if index in wanted:
            mask = read_mask(args.masks / f"{index:05d}.png")
            tile = overlay_mask(frame, mask)
            height = round(tile.shape[0] * args.width / tile.shape[1])
            tiles.append(cv2.resize(tile, (args.width, height), interpolation=cv2.INTER_AREA))
    if len(tiles) != len(wanted):
        raise SystemExit(f"{args.video} has no frame {max(wanted)}")
    strip = np.hstack([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles])[:, :-4]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
