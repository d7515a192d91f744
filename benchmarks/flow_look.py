"""How our flow images compare with HFAN's own (../shared/data/hfan_demo, RAFT raft-things, frame 0 -> 1).

For blackswan and libby, frame 0 -> 1 of DAVIS-2016 480p, every weight-free method is drawn with HFAN's channel
order (hfan.flow.encoding.flow_to_hfan_image) and passed through JPEG q95 like the files. Printed per image:
saturation (HSV, 0..1) mean / median / 90th percentile, the share of near-white pixels (saturation < 0.1,
i.e. almost no motion relative to the image's largest), the hue histogram (8 bins of 45 degrees, over pixels
with saturation > 0.2), and against HFAN's image: median hue difference and share within 20 degrees, and the
correlation of saturations. The RAFT-order (unswapped) row shows the channel-order finding.

    PYTHONPATH=src python benchmarks/flow_look.py --out runs/flow_look
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from hfan.io.images import read_image, write_image
from hfan.flow import build_flow_estimator, flow_to_hfan_image, flow_to_image

VIDEOS = ("blackswan", "libby")
METHODS = {"dis medium": ("dis", {"preset": "medium"}), "dis fast": ("dis", {"preset": "fast"}),
           "dis ultrafast": ("dis", {"preset": "ultrafast"}), "farneback": ("farneback", {})}


def _jpeg_round_trip(image: np.ndarray) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _hue_saturation(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float64)
    return hsv[..., 0] * 360 / 256, hsv[..., 1] / 255


def statistics(image: np.ndarray, reference: np.ndarray | None) -> dict:
    hue, saturation = _hue_saturation(image)
    coloured = saturation > 0.2
    histogram = np.histogram(hue[coloured], bins=8, range=(0, 360))[0] / max(coloured.sum(), 1)
    row = {"sat mean": saturation.mean(), "sat median": np.median(saturation),
           "sat p90": np.percentile(saturation, 90), "white": (saturation < 0.1).mean(),
           "hue hist": " ".join(f"{100 * h:2.0f}" for h in histogram)}
    if reference is not None:
        reference_hue, reference_saturation = _hue_saturation(reference)
        both = coloured & (reference_saturation > 0.2)
        difference = np.abs((hue - reference_hue + 180) % 360 - 180)[both]
        row.update({"hue diff": np.median(difference), "<20deg": (difference < 20).mean(),
                    "sat corr": np.corrcoef(saturation.ravel(), reference_saturation.ravel())[0, 1]})
    return row


def _labelled(image: np.ndarray, label: str) -> np.ndarray:
    small = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    cv2.putText(small, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(small, label, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return small


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = Path(os.environ.get("HFAN_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--shared", type=Path, default=default_shared)
    parser.add_argument("--out", type=Path, required=True, help="folder for flow_look.png")
    args = parser.parse_args()
    header = ["video", "image", "sat mean", "sat median", "sat p90", "white", "hue diff", "<20deg", "sat corr",
              "hue hist (% per 45 deg from 0)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for video in VIDEOS:
        frames = [read_image(args.shared / f"data/davis16_mini/JPEGImages/480p/{video}/{i:05d}.jpg") for i in (0, 1)]
        hfan = read_image(args.shared / f"data/hfan_demo/{video}_00000_fw.jpg")
        images = {"HFAN (RAFT things)": hfan}
        for label, (name, options) in METHODS.items():
            flow = build_flow_estimator(name, **options)(*frames)
            images[label] = _jpeg_round_trip(flow_to_hfan_image(flow))
            if label == "dis medium":
                images["dis medium, RAFT order"] = _jpeg_round_trip(flow_to_image(flow))
        for label, image in images.items():
            s = statistics(image, None if image is hfan else hfan)
            cells = [video, label] + [f"{s[k]:.3f}" if k in s else "" for k in header[2:9]] + [s["hue hist"]]
            print("| " + " | ".join(cells) + " |")
        rows.append(np.concatenate([_labelled(frames[0], f"{video} frame 0"), _labelled(hfan, "HFAN (RAFT)"),
                                    _labelled(images["dis medium"], "ours: DIS medium"),
                                    _labelled(images["farneback"], "ours: Farneback")], axis=1))
    write_image(args.out / "flow_look.png", np.concatenate(rows, axis=0))
    print(f"\nside by side: {args.out / 'flow_look.png'}")


if __name__ == "__main__":
    main()
