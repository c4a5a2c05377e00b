"""Segmentation models: architectures, the registry, model cards and checkpoints."""
