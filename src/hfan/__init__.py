"""HFAN: Hierarchical Feature Alignment Network for unsupervised video object segmentation."""
from hfan.config import PRESETS, ModelConfig, get_preset

__version__ = "0.1.0"

__all__ = ["PRESETS", "ModelConfig", "get_preset", "__version__"]
