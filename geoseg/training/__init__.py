"""Training segmentation models: config, chip sampling, augmentation, losses, the loop."""
