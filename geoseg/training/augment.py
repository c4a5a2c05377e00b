"""Geometric augmentation of chips: flips and 90-degree rotations (the dihedral group).

Each chip gets one of the eight symmetries of the square, drawn from a seeded
generator, applied identically to the image and its labels. Pixel values are
never resampled, so labels stay exact. Optionally the scaled bands of a chip
are jittered by a random per-band gain and offset (:func:`radiometric_jitter`),
so that a model leans less on exact brightness.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

SYMMETRIES = 8
"""Number of distinct flip/rotation combinations of a square chip."""


def apply_symmetry(
    image: NDArray[np.float32], labels: NDArray[np.int64], symmetry: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Apply symmetry ``0..7`` to an image ``(bands, H, W)`` and its labels ``(H, W)``.

    ``symmetry % 4`` quarter turns counter-clockwise, then a left-right flip
    when ``symmetry >= 4``. Symmetry 0 is the identity.
    """
    turns = symmetry % 4
    image = np.rot90(image, turns, axes=(1, 2))
    labels = np.rot90(labels, turns, axes=(0, 1))
    if symmetry >= 4:
        image = image[:, :, ::-1]
        labels = labels[:, ::-1]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def random_symmetry(
    image: NDArray[np.float32], labels: NDArray[np.int64], generator: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Apply one of the eight symmetries, drawn uniformly from ``generator``."""
    return apply_symmetry(image, labels, int(generator.integers(0, SYMMETRIES)))


def radiometric_jitter(
    image: NDArray[np.float32],
    generator: np.random.Generator,
    *,
    gain_std: float,
    offset_std: float,
) -> NDArray[np.float32]:
    """``image * gain + offset``, per band: gain ~ N(1, gain_std), offset ~ N(0, offset_std)."""
    bands = image.shape[0]
    gain = generator.normal(1.0, gain_std, size=(bands, 1, 1))
    offset = generator.normal(0.0, offset_std, size=(bands, 1, 1))
    return (image * gain + offset).astype(np.float32)
