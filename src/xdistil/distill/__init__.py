"""Distillation: losses, the stage schedule as data, and the one training loop."""
