"""Evaluation with the official protocols: DAVIS-2016 J/F (`evaluate_davis`) and VSOD measures (`evaluate_vsod`).

`read_mask` is the one reader of mask PNGs; `report` runs an evaluation and writes its tables and files.
"""
from hfan.evaluation.davis import DavisResult, evaluate_davis
from hfan.io.images import read_mask
from hfan.evaluation.report import report
from hfan.evaluation.vsod import VsodResult, evaluate_vsod

__all__ = ["DavisResult", "VsodResult", "evaluate_davis", "evaluate_vsod", "read_mask", "report"]
