"""Trainer, evaluation, protocols."""
