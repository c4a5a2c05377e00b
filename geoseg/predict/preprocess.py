"""Turning a scene's bands into model inputs: band resolution and scaling.

Band resolution maps the model card's band names (``blue``, ``green``, ``red``,
``nir``...) to the 1-based band indexes of a raster: from an explicit mapping
given by the caller or the catalog, else from the raster's band descriptions
(``B2_blue`` -> ``blue``). Scaling applies the card's
:class:`~geoseg.models.card.InputScaling` to values already in physical units.
For ``scene_percentile`` the per-band percentiles are computed ONCE per scene
from a fixed lattice of sample windows, so they never depend on the chunking.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from geoseg.errors import BandMismatchError, InputError
from geoseg.grid import PixelWindow, RasterGrid
from geoseg.models.card import InputScaling

_TOKEN = re.compile(r"[^a-z0-9]+")

PhysicalValues = NDArray[np.float32] | NDArray[np.uint8 | np.int8 | np.uint16 | np.int16]
"""Band values in physical units as sources deliver them: float32, or 8- and
16-bit integers (raw values without scale or offset, which float32 holds exactly)."""


def band_name_from_description(description: str) -> str:
    """The common band name a description refers to (``'B3_green'`` -> ``'green'``).

    The description is lower-cased and split on non-alphanumerics; the last
    token that is not a band number (``b3``, ``3``) is the name. An empty
    description gives ``''``.
    """
    tokens = [token for token in _TOKEN.split(description.lower()) if token]
    names = [token for token in tokens if not re.fullmatch(r"b?\d+", token)]
    return names[-1] if names else ""


def band_names_from_descriptions(descriptions: Sequence[str]) -> list[str]:
    """One name per band: the parsed description, else ``band<N>`` (1-based)."""
    return [
        band_name_from_description(text) or f"band{index}"
        for index, text in enumerate(descriptions, start=1)
    ]


def band_names_from_metadata(
    descriptions: Sequence[str], common_names: Sequence[str] = ()
) -> list[str]:
    """One name per band: its ``common_name`` tag where set, else the parsed description.

    The tag is the exact STAC common name (Sentinel-2 B8 is ``nir``, B8A
    ``nir08``), so it wins over a description that may be free text.
    """
    parsed = band_names_from_descriptions(descriptions)
    tags = [*common_names, *[""] * (len(parsed) - len(common_names))]
    return [tag.strip().lower() or name for tag, name in zip(tags, parsed, strict=True)]


def resolve_band_indexes(
    source_label: str,
    required: Sequence[str],
    available: Sequence[str],
    band_map: Mapping[str, int] | None = None,
) -> list[int]:
    """The 1-based indexes of the ``required`` bands, in the order required.

    Parameters
    ----------
    source_label
        The file (or scene) name, for error messages.
    required
        Band names the model card lists, in model order.
    available
        Band names of the source (one per band, e.g. from its descriptions).
    band_map
        Explicit ``{name: 1-based index}``; takes precedence over ``available``.

    Raises
    ------
    BandMismatchError
        A required band is missing; the message names it and says how to fix it.
    """
    count = len(available)
    if band_map is not None:
        for name, index in band_map.items():
            if not 1 <= index <= count:
                raise BandMismatchError(
                    f"{source_label}: band map gives {name}={index} but the raster has "
                    f"{count} band(s)"
                )
        lookup = {name.lower(): index for name, index in band_map.items()}
    else:
        lookup = {}
        for index, name in enumerate(available, start=1):
            lookup.setdefault(name.lower(), index)
    missing = [name for name in required if name.lower() not in lookup]
    if missing:
        raise BandMismatchError(
            f"{source_label}: the model needs bands {list(required)} but band(s) "
            f"{missing} are missing (the raster has {count} band(s) named {list(available)}); "
            "name the bands in the raster's descriptions or pass an explicit mapping, "
            "e.g. --bands " + ",".join(f"{name}={i}" for i, name in enumerate(required, 1))
        )
    return [lookup[name.lower()] for name in required]


@dataclass(frozen=True, slots=True)
class SceneStatistics:
    """Per-band low and high percentiles of a scene's valid pixels (physical units)."""

    low: tuple[float, ...]
    high: tuple[float, ...]


def sample_windows(grid: RasterGrid, *, size: int = 128, per_axis: int = 8) -> list[PixelWindow]:
    """A fixed lattice of up to ``per_axis`` x ``per_axis`` windows spread over the scene.

    The lattice depends only on the grid, so statistics computed from it are
    the same whatever the chunking.
    """

    def starts(length: int) -> list[int]:
        if length <= size * per_axis:
            return list(range(0, length, size))
        step = (length - size) / (per_axis - 1)
        return sorted({round(index * step) for index in range(per_axis)})

    return [
        PixelWindow(row, col, min(size, grid.height - row), min(size, grid.width - col))
        for row in starts(grid.height)
        for col in starts(grid.width)
    ]


def scene_statistics(
    source_label: str,
    samples: Sequence[tuple[PhysicalValues, NDArray[np.bool_]]],
    percentiles: tuple[float, float],
) -> SceneStatistics:
    """Per-band percentiles of the valid pixels of ``samples``.

    Raises
    ------
    InputError
        No valid pixel in any sample (an all-nodata scene).
    """
    values = [data[:, valid] for data, valid in samples if valid.any()]
    if not values:
        raise InputError(
            f"{source_label}: no valid pixels found (the scene is entirely nodata); "
            "check the nodata value and the input file"
        )
    stacked = np.concatenate(values, axis=1, dtype=np.float64)
    # both percentiles from one partition of one copy: the same values as two calls
    low, high = np.percentile(stacked, list(percentiles), axis=1)
    return SceneStatistics(tuple(float(v) for v in low), tuple(float(v) for v in high))


def scaling_constants(
    scaling: InputScaling, statistics: SceneStatistics | None
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Per-band ``(low, spread)``: model input = (physical - low) / spread.

    Raises
    ------
    InputError
        Standardize scaling without mean and std, or ``scene_percentile``
        scaling without statistics.
    """
    if scaling.method == "standardize":
        if scaling.mean is None or scaling.std is None:
            raise InputError("standardize scaling needs 'mean' and 'std' in the model card")
        return (
            np.asarray(scaling.mean, dtype=np.float32),
            np.asarray(scaling.std, dtype=np.float32),
        )
    if statistics is None:
        raise InputError("scene_percentile scaling needs the scene's statistics")
    low = np.asarray(statistics.low, dtype=np.float32)
    high = np.asarray(statistics.high, dtype=np.float32)
    return low, np.maximum(high - low, np.float32(1e-6))


def normalize(
    physical: NDArray[np.floating[Any]] | NDArray[np.integer[Any]],
    valid: NDArray[np.bool_],
    scaling: InputScaling,
    statistics: SceneStatistics | None,
    *,
    bands: Sequence[int] | None = None,
    cols: slice | None = None,
    out: NDArray[np.float32] | None = None,
) -> NDArray[np.float32]:
    """Model inputs ``(bands, h, w)`` from physical values; invalid pixels become 0.

    Values are ``(physical - low) / spread`` computed in numpy's promoted type
    of ``physical`` and float32, stored as float32.

    Parameters
    ----------
    physical
        ``(bands, h, w)`` values in physical units.
    valid
        ``(h, w)`` validity.
    scaling, statistics
        The card's scaling and, for ``scene_percentile``, the scene's statistics.
    bands
        Positions in ``physical`` of the model's bands, in model order
        (default: all of them, in order).
    cols
        The columns to scale (default: all), e.g. one tile of a window read
        for several.
    out
        Float32 array ``(bands, h, columns)`` to write into (e.g. a tile of a
        batch); a new one when None.

    Raises
    ------
    InputError
        ``scene_percentile`` scaling without statistics.
    """
    low, spread = scaling_constants(scaling, statistics)
    positions = range(len(physical)) if bands is None else bands
    columns = cols or slice(None)
    invalid = ~valid[:, columns]
    shape = (len(positions), *invalid.shape)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    if out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out must be a float32 array of shape {shape}")
    exact_in_out = np.result_type(physical.dtype, np.float32) == np.float32
    for band, source in enumerate(positions):
        values = physical[source, :, columns]
        if exact_in_out:  # computed in float32: straight into ``out``, no temporaries
            np.subtract(values, low[band], out=out[band])
            np.divide(out[band], spread[band], out=out[band])
        else:
            out[band] = (values - low[band]) / spread[band]
    np.copyto(out, np.float32(0.0), where=invalid[None])
    return out


def reflect_pad(
    data: NDArray[np.float32], valid: NDArray[np.bool_], inside: PixelWindow
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Fill the part of a tile outside the scene by reflecting the part inside.

    ``inside`` is the scene part of the tile, in tile coordinates (it starts at
    0, 0: tiles only run past the bottom and right borders). The reflected
    pixels keep their validity so they carry real context for the model.
    """
    height, width = data.shape[-2:]
    if inside.height == height and inside.width == width:
        return data, valid
    pad = ((0, height - inside.height), (0, width - inside.width))
    core = data[:, : inside.height, : inside.width]
    padded = np.stack([np.pad(band, pad, mode="symmetric") for band in core])
    padded_valid = np.pad(valid[: inside.height, : inside.width], pad, mode="symmetric")
    return padded.astype(np.float32, copy=False), padded_valid
