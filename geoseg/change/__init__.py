"""Change stage: class maps, regions, additive change counts, metrics and evaluation."""
