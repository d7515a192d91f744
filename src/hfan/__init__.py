"""HFAN: Hierarchical Feature Alignment Network for unsupervised video object segmentation."""
from hfan.config import PRESETS, ModelConfig, apply_overrides, get_preset
from hfan.models.checkpoints import load_model, save_checkpoint
from hfan.models.segmentor import HFANSegmentor, build_model

__version__ = "0.1.0"

__all__ = ["PRESETS", "HFANSegmentor", "ModelConfig", "__version__", "apply_overrides", "build_model", "get_preset",
           "load_model", "save_checkpoint"]
