"""One training loop for every stage, checkpoints and batched inference."""
