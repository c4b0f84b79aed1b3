"""Prompt-learning methods over the shared backbone, one module each; `registry` lists them."""

from vlp_core.methods.base import PromptMethod
from vlp_core.methods.coop import CoOp, CoOpConfig
from vlp_core.methods.disa import DiSa, DiSaConfig
from vlp_core.methods.gallop import GalLoP, GalLoPConfig
from vlp_core.methods.ivlp import IVLP, IVLPConfig
from vlp_core.methods.promptsrc import PromptSRC, PromptSRCConfig
from vlp_core.methods.zeroshot import ZeroShotCLIP, ZeroShotConfig

__all__ = [
    "CoOp", "CoOpConfig", "DiSa", "DiSaConfig", "GalLoP", "GalLoPConfig", "IVLP", "IVLPConfig",
    "PromptMethod", "PromptSRC", "PromptSRCConfig", "ZeroShotCLIP", "ZeroShotConfig",
]
