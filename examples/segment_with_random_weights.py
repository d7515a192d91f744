"""The Python API end to end, with random weights so that it runs anywhere (the masks are meaningless).

    python examples/segment_with_random_weights.py [VIDEO]

With real weights: model = hfan.load_model("default"), or hfan.load_model("HFAN-s-converted.pth").
"""
import sys
from pathlib import Path

import hfan
from hfan.io.video import open_frames

default_video = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "tree.avi"
video = sys.argv[1] if len(sys.argv) > 1 else str(default_video)

model = hfan.build_model("hfan-b0", ["test.mode=whole"])  # random weights; whole-image mode is quick
for result in hfan.segment_video(video, model, flow="dis"):
    print(f"frame {result.index}: {result.mask.mean():.1%} foreground, mask {result.mask.shape}")
    if result.index == 4:
        break  # results come lazily: stopping here decodes no further frames (on a GPU, a batch or two read ahead)

first = next(iter(open_frames(video)))
[prediction] = hfan.Predictor(model).predict([first], [first])
print("one frame through a Predictor:", prediction.mask.shape)
