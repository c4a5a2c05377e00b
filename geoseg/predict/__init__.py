"""Predict stage: tiled, overlapping-window inference stitched into class maps."""
