"""Predict-time resampling: a finer scene read at the model card's pixel size.

A card with ``resampling: card_pixel_size`` was trained on finer scenes read
as block means at its ``pixel_size_m`` (:class:`~geoseg.predict.sources.ZoomedSource`,
the whole multiple of the scene's pixel nearest the card's:
:func:`~geoseg.predict.sources.zoom_factor`). Prediction reads them the same
way: a 10 m Sentinel-2 scene for a 30 m card is read as 3 x 3 block means of
valid pixels, and the output grid is that zoomed grid (same origin and CRS,
pixels three times larger, the last row and column covering the rest of the
extent). :func:`at_card_pixel_size` wraps a source accordingly and returns a
:class:`Resampling` record, which runs put in their manifest, ``geoseg predict``
in its COGs' tags, and which says it in one line (:meth:`Resampling.notice`).
Cards without the setting (``native``) read every scene at its own pixels:
no record, no change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from geoseg.areas import pixel_size_m as ground_pixel_size_m
from geoseg.grid import RasterGrid
from geoseg.models.card import ModelCard
from geoseg.predict.sources import RasterSource, ZoomedSource, zoom_factor

BLOCK_MEAN = "block mean of valid pixels"
"""The method of a zoomed read (a block is valid when any of its pixels is)."""
NO_RESAMPLING = "none (the scene is at the card's pixel size)"
"""The method recorded when a card asks for its pixel size and the scene already has it."""
RESAMPLING_TAG = "GEOSEG_RESAMPLING"
"""Output tag and ``geoseg.segment`` attribute: :meth:`Resampling.record` as JSON."""


@dataclass(frozen=True)
class Resampling:
    """How a scene was read for a ``card_pixel_size`` card: its pixel, the factor, the result."""

    source_pixel_size_m: float
    """The scene's ground pixel size (m)."""
    factor: int
    """Output pixels are ``factor`` x ``factor`` blocks of scene pixels (1: read as is)."""
    output_pixel_size_m: float
    """The output grid's ground pixel size (m)."""
    card_pixel_size_m: float
    """The pixel size the card asks for (m)."""

    @property
    def method(self) -> str:
        """:data:`BLOCK_MEAN`, or :data:`NO_RESAMPLING` for a factor of 1."""
        return BLOCK_MEAN if self.factor > 1 else NO_RESAMPLING

    def record(self) -> dict[str, Any]:
        """The resampling as a manifest records it (JSON-ready)."""
        return {
            "source_pixel_size_m": round(self.source_pixel_size_m, 3),
            "factor": self.factor,
            "method": self.method,
            "output_pixel_size_m": round(self.output_pixel_size_m, 3),
            "card_pixel_size_m": self.card_pixel_size_m,
        }

    def notice(self, label: str) -> str:
        """One line for the user: what was read at which pixel size (empty for a factor of 1)."""
        if self.factor == 1:
            return ""
        return (
            f"{label}: read at {self.output_pixel_size_m:.3g} m, the model card's pixel size: "
            f"{self.source_pixel_size_m:.3g} m pixels averaged in {self.factor}x{self.factor} "
            "blocks (block mean of valid pixels); the outputs are on that grid"
        )


def resampling_for(card: ModelCard, grid: RasterGrid) -> Resampling | None:
    """How ``card`` reads a scene on ``grid``: None for a ``native`` card (pure).

    The factor is :func:`~geoseg.predict.sources.zoom_factor` of the grid and
    the card's pixel size, as in training.
    """
    if card.resampling != "card_pixel_size":
        return None
    factor = zoom_factor(grid, card.pixel_size_m)
    return Resampling(
        source_pixel_size_m=ground_pixel_size_m(grid),
        factor=factor,
        output_pixel_size_m=ground_pixel_size_m(grid.zoom_out(factor)),
        card_pixel_size_m=card.pixel_size_m,
    )


def output_grid(card: ModelCard, grid: RasterGrid) -> RasterGrid:
    """The grid a run over ``grid`` writes with ``card``: zoomed out where the card resamples."""
    resampling = resampling_for(card, grid)
    return grid if resampling is None else grid.zoom_out(resampling.factor)


def at_card_pixel_size(
    source: RasterSource, card: ModelCard
) -> tuple[RasterSource, Resampling | None]:
    """``source`` as ``card`` reads it, and the record (None: a ``native`` card, as is).

    A finer scene for a ``card_pixel_size`` card becomes a
    :class:`~geoseg.predict.sources.ZoomedSource`; a scene already at the
    card's pixel size (factor 1), or coarser, is read as it is.
    """
    resampling = resampling_for(card, source.grid)
    if resampling is None or resampling.factor == 1:
        return source, resampling
    return ZoomedSource(source, resampling.factor), resampling
