"""A picture of training samples of the default model: frame, next frame, flow image (camera motion removed), label.

    python benchmarks/composite_samples.py --out docs/default_model_samples.png [--count 6] [--seed 0] \
        [--options data.composites.parallax_probability=1]

The clips of items 0..count-1 of epoch 0 of the `hfan-default-composites` stream (seed 1208 by default).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from hfan.datasets.composites import CompositeGenerator, load_assets
from hfan.config import apply_overrides
from hfan.presets import get_train_preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--seed", type=int, default=None, help="default: the preset's")
    parser.add_argument("--options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="dotted overrides of the training preset, as for hfan train")
    args = parser.parse_args()
    config = apply_overrides(get_train_preset("hfan-default-composites"), args.options)
    flow = config.model.flow
    seed = config.seed if args.seed is None else args.seed
    assets = load_assets(config.data.composites).split(held_out=False)
    generator = CompositeGenerator(assets, config.data.composites, flow.camera_motion, flow.dis_preset)
    tiles = []
    for index in range(args.count):
        clip = generator.clip(np.random.default_rng([seed, 0, index]), 2)
        label = np.repeat((clip.masks[0] * 255).astype(np.uint8)[..., None], 3, axis=2)
        row = [clip.frames[0], clip.frames[1], clip.flow_images[0], label]
        tiles.append(np.hstack([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in row]))
    grid = np.vstack([np.hstack(tiles[i:i + 2]) for i in range(0, len(tiles) - 1, 2)])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
