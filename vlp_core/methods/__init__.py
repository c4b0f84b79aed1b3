"""Prompt-learning methods over the shared backbone, one module each."""

from vlp_core.methods.base import PromptMethod

__all__ = ["PromptMethod"]
