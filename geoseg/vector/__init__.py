"""Vector stage: seam-free polygonization of class maps and their attributes."""
