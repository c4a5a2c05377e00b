"""Catalog stage: STAC search over a bbox, scene mosaics on one grid, the data directory."""
