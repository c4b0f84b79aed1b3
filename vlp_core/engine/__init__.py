"""One trainer for every method (SGD + cosine + warm-up, mixed precision, checkpoints, resume, DDP) and
the recipe table."""
