"""The training domain a card records: what the model's inputs looked like in training.

:func:`training_domain` reads the training windows of every scene through the
training path (:func:`geoseg.training.sampling.read_inputs`: the same reads and
the same scaling as the chips, and as ``geoseg predict``) on a fixed lattice of
sample windows inside each training window (:func:`domain_windows`), and
summarises the valid pixels per band (:func:`geoseg.predict.domain.band_distributions`).
Each scene counts with its share of the training chips (``weight`` in the
config), spread evenly over its sampled pixels, so the record describes the
mixture of inputs the model was fed, not the largest scene. Validation
windows (and test blocks, which are in no window) are left out.
"""

from __future__ import annotations

import numpy as np

from geoseg.grid import PixelWindow
from geoseg.models.card import TrainingDomain
from geoseg.predict.domain import band_distributions, ground_pixel_size_m, sensor_family
from geoseg.predict.preprocess import sample_windows
from geoseg.training.sampling import TrainingScene, read_inputs

SAMPLING = (
    "valid pixels of a fixed lattice of up to 8 x 8 windows of 128 px inside each training "
    "window (validation and test pixels excluded), scaled as in training; each scene weighted "
    "by its share of the training chips"
)
"""How :func:`training_domain` samples, as recorded in the card."""


def domain_windows(scene: TrainingScene) -> list[PixelWindow]:
    """The sample windows of ``scene``: the fixed lattice inside each of its training windows."""
    return [
        part.shift(window.row, window.col)
        for window in scene.train_windows
        for part in sample_windows(scene.grid.subgrid(window))
    ]


def training_domain(scenes: list[TrainingScene], band_names: list[str]) -> TrainingDomain:
    """The :class:`~geoseg.models.card.TrainingDomain` of ``scenes`` (see the module docstring).

    Parameters
    ----------
    scenes
        The prepared training scenes (their scaling and statistics are the card's).
    band_names
        The card's band names, in model order.
    """
    parts = []
    weights = []
    for scene in scenes:
        values = []
        for window in domain_windows(scene):
            inputs, valid = read_inputs(scene, window)
            values.append(inputs[:, valid])
        stacked = np.concatenate(values, axis=1)
        if stacked.shape[1]:
            parts.append(stacked)
            weights.append(np.full(stacked.shape[1], scene.weight / stacked.shape[1]))
    all_values = np.concatenate(parts, axis=1)
    sizes = sorted({round(ground_pixel_size_m(scene.grid), 1) for scene in scenes})
    sensors = sorted({sensor_family(scene.sensor) for scene in scenes} - {""})
    return TrainingDomain(
        bands=band_distributions(band_names, all_values, np.concatenate(weights)),
        pixel_sizes_m=sizes,
        sensors=sensors,
        pixels=int(all_values.shape[1]),
        sampling=SAMPLING,
    )
