"""Experiments over the engine: the papers' published numbers (paper cards) and runs compared with them."""
