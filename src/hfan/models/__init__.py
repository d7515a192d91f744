"""Models: plain nn.Modules, tensors in and tensors out."""
from hfan.models.decoder import HFANHead
from hfan.models.mit import MIT_SETTINGS, MixVisionTransformer, build_mit
from hfan.models.segmentor import HFANSegmentor, build_model

__all__ = ["HFANHead", "HFANSegmentor", "MIT_SETTINGS", "MixVisionTransformer", "build_mit", "build_model"]
