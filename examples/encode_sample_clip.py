"""Make examples/blackswan.mp4, the clip the README's first command segments, from the DAVIS-2016 frames.

    python examples/encode_sample_clip.py ../shared/data/davis16_mini/JPEGImages/480p/blackswan

H.264 (yuv420p) through PyAV, 50 frames at 24 frames/s, 854x480. DAVIS 2016 (Perazzi et al., CVPR 2016) is
licensed CC BY 4.0; see examples/README.md.
"""
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image

frames_dir = Path(sys.argv[1])
out = Path(__file__).with_name("blackswan.mp4")
files = sorted(frames_dir.glob("*.jpg"))
if not files:
    sys.exit(f"no .jpg frames in {frames_dir}")
temporary = out.with_suffix(".tmp.mp4")
with av.open(str(temporary), "w") as container:
    stream = container.add_stream("libx264", rate=24)
    first = np.asarray(Image.open(files[0]).convert("RGB"))
    stream.height, stream.width = first.shape[:2]
    stream.pix_fmt = "yuv420p"
    stream.options = {"crf": "23", "preset": "slow"}
    for path in files:
        frame = av.VideoFrame.from_ndarray(np.asarray(Image.open(path).convert("RGB")), format="rgb24")
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
temporary.replace(out)
print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB, {len(files)} frames)")
