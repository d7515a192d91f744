"""HFAN: Hierarchical Feature Alignment Network for unsupervised video object segmentation.

The public API, imported lazily (so that `import hfan.config` loads neither torch nor OpenCV):

    model = hfan.load_model("default")                  # or an official file: "HFAN-s-converted.pth"
    for result in hfan.segment_video("video.mp4", model):
        result.mask                                     # bool HxW per frame
    predictor = hfan.Predictor(model)                   # frames + flow images -> hfan.Prediction
    hfan.evaluate_davis("predictions/", "DAVIS/")       # DAVIS-2016 J/F, the official protocol
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "hfan.models.checkpoints",
    "save_checkpoint": "hfan.models.checkpoints",
    "build_model": "hfan.models.segmentor",
    "HFANSegmentor": "hfan.models.segmentor",
    "Predictor": "hfan.inference.predictor",
    "Prediction": "hfan.inference.predictor",
    "segment_video": "hfan.segment",
    "segment_to_folder": "hfan.segment",
    "evaluate_davis": "hfan.evaluation.davis",
    "evaluate_vsod": "hfan.evaluation.vsod",
    "list_presets": "hfan.presets",
    "get_preset": "hfan.presets",
    "ModelConfig": "hfan.config",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hfan' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
