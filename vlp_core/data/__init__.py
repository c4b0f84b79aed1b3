"""Datasets: SynthWorld suites and CoOp-format real datasets behind one interface."""

from vlp_core.data.base import ClassificationData, Datum
from vlp_core.data.fewshot import base_novel_split, sample_few_shot

__all__ = ["ClassificationData", "Datum", "base_novel_split", "sample_few_shot"]
