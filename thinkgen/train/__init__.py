"""Training: configs, the accelerate loop, checkpoints, and one module per stage."""
