"""The Python API end to end, with random weights so that it runs anywhere (the masks are meaningless).

    python examples/segment_with_random_weights.py [VIDEO]

With real weights: model = hfan.load_model("hfan-small", checkpoint="HFAN-s-converted.pth").
"""
import sys
from pathlib import Path

import hfan
from hfan.data.io import open_frames
from hfan.pipeline import segment_video

default_video = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "tree.avi"
video = sys.argv[1] if len(sys.argv) > 1 else str(default_video)

model = hfan.load_model("hfan-b0", options=["test.mode=whole"])  # random weights; whole-image mode is quick
for result in segment_video(video, model, flow="dis"):
    print(f"frame {result.index}: {result.mask.mean():.1%} foreground, mask {result.mask.shape}")
    if result.index == 4:
        break  # results come lazily: stopping here decodes no further frames (on a GPU, a batch or two read ahead)

first = next(iter(open_frames(video)))
print("one frame through model.predict:", model.predict(first, first).mask.shape)
